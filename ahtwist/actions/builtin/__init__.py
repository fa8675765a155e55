"""The actions every node serves (docs/python-api.md, 'Built-in actions')."""

from ahtwist.actions.builtin.cache_test import CacheTest
from ahtwist.actions.builtin.chat import CreateChatRoom
from ahtwist.actions.builtin.file import File
from ahtwist.actions.builtin.random_number import RandomNumber
from ahtwist.actions.builtin.show_documentation import ShowDocumentation
from ahtwist.actions.builtin.sleep_test import SleepTest
from ahtwist.actions.builtin.status import Status

BUILTIN_ACTIONS = (
    Status,
    RandomNumber,
    CacheTest,
    SleepTest,
    ShowDocumentation,
    CreateChatRoom,
    File,
)
