def handle(event, context):
    """Answer every authenticated request with a greeting.

    event.body is the raw request body (bytes), event.headers, event.method,
    event.query and event.path describe the request, and event.auth says who
    was authenticated (None when auth_scheme is none).
    """
    who = event.auth.subject if event.auth else "anonymous"
    return {"statusCode": 200, "body": f"Hello, {who}!"}
