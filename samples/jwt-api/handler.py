def handle(event, context):
    """Answer with the verified claims of the caller's JWT.

    Tokens must be signed by the key in the jwt-public-key secret, for the
    issuer and audience set in stack.yml, and not expired.
    """
    claims = event.auth.claims
    return {
        "statusCode": 200,
        "body": {"subject": event.auth.subject, "scope": claims.get("scope", "")},
    }
