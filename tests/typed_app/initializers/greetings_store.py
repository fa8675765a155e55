"""An initializer keeping a resource on the node for the app's lifetime."""

from typing import Any

from ahtwist import Initializer
from ahtwist.node import Node


class GreetingsStore(Initializer):
    name = "typedGreetingsStore"
    start_priority = 500

    def __init__(self) -> None:
        self.opened = False

    def initialize(self, node: Any) -> None:
        self.opened = False

    def start(self, node: Node) -> None:
        self.opened = True
        node.app.greetings = ["Hello"]

    def stop(self, node: Node) -> None:
        self.opened = False
