import json


def handle(event, context):
    """Accept a Standard Webhooks (or Svix) delivery exactly once.

    webhook-id, webhook-timestamp and webhook-signature were verified
    against the webhook-secret secret; auth_replay_cache refuses a second
    delivery of the same webhook-id within the tolerance.
    """
    message = json.loads(event.body or b"{}")
    return {
        "statusCode": 200,
        "body": {"received": message.get("type", "unknown"), "id": event.auth.subject},
    }
