"""showDocumentation: every documented action, by name and version."""

from ahtwist.actions.action import Action


class ShowDocumentation(Action):
    name = "showDocumentation"
    description = "return API documentation"
    output_example = {"documentation": {}}

    def run(self, data):
        data.response["documentation"] = data.node.registry.documentation()
