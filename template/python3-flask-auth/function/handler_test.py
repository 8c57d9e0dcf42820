from .handler import handle


def test_greets_anonymous_without_auth():
    """Outside the runtime no one was authenticated."""
    assert handle("") == "Hello, anonymous!"
