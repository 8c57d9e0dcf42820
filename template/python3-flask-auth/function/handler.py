from faas_runtime import current_identity


def handle(req):
    """Greet whoever the auth middleware admitted.

    req is the request body as text (bytes when RAW_BODY is true); flask's
    request object is there too: from flask import request.
    """
    identity = current_identity()
    who = identity.subject if identity else "anonymous"
    return f"Hello, {who}!"
