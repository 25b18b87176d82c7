"""The Django Channels 4 side of the benchmark, served by uvicorn."""
