"""randomNumber: a random float in [0, 1) and the same number as text."""

import random

import orjson

from ahtwist.actions.action import Action


class RandomNumber(Action):
    name = "randomNumber"
    description = "I am an API method which will generate a random number"
    output_example = {"randomNumber": 0.123, "stringRandomNumber": "Your random number is 0.123"}

    def run(self, data):
        number = random.random()
        data.response["randomNumber"] = number
        # the number exactly as the JSON reply (and JavaScript) prints it:
        # Python's repr would write 4.9e-05 where JSON has 0.000049
        data.response["stringRandomNumber"] = f"Your random number is {orjson.dumps(number).decode()}"
