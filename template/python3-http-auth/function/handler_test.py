from types import SimpleNamespace

from .handler import handle


def test_greets_the_authenticated_caller():
    """The greeting names whoever the auth middleware admitted."""
    event = SimpleNamespace(
        body=b"",
        headers={},
        method="GET",
        query={},
        path="/",
        auth=SimpleNamespace(subject="octocat"),
    )
    response = handle(event, SimpleNamespace(hostname="localhost"))
    assert response == {"statusCode": 200, "body": "Hello, octocat!"}
