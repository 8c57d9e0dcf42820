import json


def handle(event, context):
    """Summarise a GitHub delivery; only correctly signed ones get here.

    The runtime has already checked X-Hub-Signature-256 against the
    github-webhook-secret secret, in constant time, over the raw body.
    """
    kind = event.headers.get("X-GitHub-Event", "unknown")
    payload = json.loads(event.body or b"{}")
    if kind == "ping":
        return {"statusCode": 200, "body": {"pong": payload.get("zen", "")}}

    repository = payload.get("repository", {}).get("full_name", "?")
    return {
        "statusCode": 202,
        "body": {
            "event": kind,
            "repository": repository,
            "delivery": event.auth.subject,
        },
    }
