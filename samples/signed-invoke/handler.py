def handle(event, context):
    """Echo a body signed with faas-cli invoke --sign Hmac --key ...

    Try: echo -n hi | faas-cli invoke signed-invoke --sign Hmac \
             --key "$(cat .secrets/payload-secret)"
    """
    text = event.body.decode(errors="replace")
    return {"statusCode": 200, "body": f"verified {len(event.body)} bytes: {text}"}
