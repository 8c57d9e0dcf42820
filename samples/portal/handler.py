from html import escape

from faas_runtime import current_identity


def handle(req):
    """A small portal page for users listed in the portal-users secret.

    The browser asks for a user name and password (HTTP Basic); lines of
    portal-users are "user:password" or "user:<hash>" made with
    python -m faas_runtime._passwords.
    """
    user = current_identity().subject
    return (
        "<!doctype html><title>Portal</title>"
        f"<h1>Welcome, {escape(user)}</h1>"
        "<p>You are signed in with HTTP Basic over the function's own check.</p>"
    )
