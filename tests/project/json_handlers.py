from django_ws import JsonWebSocketHandler, on_type


class TypedHandler(JsonWebSocketHandler):
    """Routes {"type": "add"} to add(); everything else reaches on_json."""

    @on_type("add")
    def add(self, content):
        self.send_json({"sum": content["a"] + content["b"]})

    def on_json(self, content):
        self.send_json({"other": content})


class EagerHandler(JsonWebSocketHandler):
    """Greets and joins its group from on_connect, before any client message."""

    def on_connect(self):
        self.send("welcome")
        self.join("eager")

    def on_json(self, content):
        self.send_json(content)
