import json

ITEMS = [{"id": 1, "name": "alpha"}, {"id": 2, "name": "beta"}]


def handle(event, context):
    """A JSON API for callers holding a token from the api-tokens secret.

    Send Authorization: Bearer <token>. The caller's key id (its label in
    the secret file, never the token) is in event.auth.subject.
    """
    if event.method == "GET":
        return {
            "statusCode": 200,
            "body": {"items": ITEMS, "caller": event.auth.subject},
        }
    if event.method == "POST":
        item = json.loads(event.body or b"{}")
        return {
            "statusCode": 201,
            "body": {"created": item, "caller": event.auth.subject},
        }
    return {"statusCode": 405, "body": "method not allowed"}
