"""The chat of the benchmark's ORM scenario: one model, used by both the django-ws and the Channels side."""
