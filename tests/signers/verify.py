"""Verifies requests the router sent, with the official Standard Webhooks SDK.

stdin: a JSON list of {secret, body, headers}; stdout: a JSON list of
"ok" or the SDK's error message.
"""
import json
import sys

from standardwebhooks.webhooks import Webhook


def check(r):
    try:
        Webhook(r["secret"]).verify(r["body"], r["headers"])
        return "ok"
    except Exception as e:  # the SDK raises WebhookVerificationError
        return f"{type(e).__name__}: {e}"


json.dump([check(r) for r in json.load(sys.stdin)], sys.stdout)
