"""The REST gateway: /forward-style routes over any V2 (Open Inference) server."""
