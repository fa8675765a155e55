"""file: send a file from the public folders (as /public/<fileName> would)."""

from ahtwist.actions.action import Action, Input


class File(Action):
    name = "file"
    description = "I will send a file from the public folders"
    inputs = {"fileName": Input(required=True)}
    output_example = {}

    def run(self, data):
        # The transport answers: web like a static file (headers, 304, 404),
        # socket with the raw bytes, websocket with a file reply.
        data.to_render = False
        # A client's name is inside the public folders, never a path on disk
        # (send_file takes absolute paths from server code only).
        name = str(data.params["fileName"]).lstrip("/")
        return data.connection.send_file(name)
