"""The Python examples of the README's "Chat rooms" section run as documented."""

import json
import re

from ahtwist.socket import SocketFactory
from tests.helpers import REPO, make_node
from tests.socket_helpers import assert_lines, connect


def readme_namespace() -> dict:
    text = (REPO / "README.md").read_text("utf-8")
    section = text[text.index("## Chat rooms") : text.index("## Development")]
    blocks = re.findall(r"```python\n(.*?)```", section, re.S)
    assert len(blocks) == 2
    namespace: dict = {}
    for block in blocks:
        exec(compile(block, "README.md", "exec"), namespace)
    return namespace


def test_readme_chat_examples():
    ns = readme_namespace()
    node = make_node(
        "[general]\nstartingChatRooms = ['defaultRoom', 'vip']\n", plugins=[ns["Announce"], ns["Lobby"]]
    )
    a, b = connect(SocketFactory(node), 2)
    assert json.loads(a.ask(b"roomAdd vip\n")[0])["error"] == "members only"
    a.ask(b"roomAdd defaultRoom\n")
    ns["MUTED"].add(b.id)
    b.ask(b"roomAdd defaultRoom\n")
    assert [json.loads(x)["message"] for x in a.lines()] == [f"I have entered the room: {b.id}"]
    assert json.loads(a.ask(b"say defaultRoom spam\n")[0])["error"] == "no spam"
    assert_lines(
        a.ask(b"say defaultRoom   hi  \n"),
        [
            '{"status":"OK","context":"response","messageCount":4,"messageId":"<uuid>"}',
            '{"message":"hi","room":"defaultRoom","from":"%s","context":"user","sentAt":<ms>}' % a.id,
        ],
    )
    assert b.lines() == []  # muted
    assert_lines(
        a.ask(b'{"action":"announce","params":{"room":"defaultRoom","text":"server here"}}\n'),
        [
            '{"members":2,"context":"response","messageCount":5,"messageId":"<uuid>"}',
            '{"message":"server here","room":"defaultRoom","from":0,"context":"user","sentAt":<ms>}',
        ],
    )
    assert json.loads(a.ask(b'{"action":"announce","params":{"room":"nope","text":"x"}}\n')[0])["error"] == (
        "room does not exist"
    )
