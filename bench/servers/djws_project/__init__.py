"""The django-ws side of the benchmark: an echo route and a broadcast route."""
