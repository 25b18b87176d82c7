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


class RequestHandler(JsonWebSocketHandler):
    """Answers django-ws.js's request(): what an @on_type method returns is the reply (tests/e2e/test_js_client.py)."""

    @on_type("add")
    def add(self, content):
        return content["a"] + content["b"]

    @on_type("nothing")
    def nothing(self, content):
        return None

    @on_type("close")
    def close_with(self, content):
        """Closes with the code the client asks for, to try the client's reconnect rules."""
        self.close(int(content["code"]), "asked")

    def on_json(self, content):
        self.send_json({"echo": content})
