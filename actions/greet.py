"""A sample user action: ``GET /api/greet?name=world``.

Files in this folder are loaded at start-up (``general.paths.actions``).
Copy this one to start your own.  (Not called ``hello``: a line ``hello``
on the socket must stay an unknown action, as in ActionHero.)
"""

from ahtwist import Action, ActionError, Input


def not_blank(value):
    return True if value.strip() else "name must not be blank"


class Greet(Action):
    name = "greet"
    description = "Greets someone by name"
    inputs = {"name": Input(required=True, formatter=str, validator=not_blank)}
    output_example = {"greeting": "Hello, world!"}

    def run(self, data):
        name = data.params["name"].strip()
        if name.lower() == "voldemort":
            raise ActionError("we do not say that name here")
        data.response["greeting"] = f"Hello, {name}!"
