"""Signs test webhooks with the providers' official Python SDKs.

stdin: a JSON list of {scheme, secret, body, timestamp, id?, url?}
stdout: a JSON list of {header: value} objects, one per request.

The router's own signing code is never used here: these are the signatures
Stripe, Standard Webhooks, Svix, Whop (via standardwebhooks), Slack and
Twilio would send. Close, Paddle and GitHub's legacy SHA-1 header have no
official Python signer here; they are
computed with the standard library (`hmac`) following the providers' docs.
"""
import base64
import datetime
import hashlib
import hmac
import json
import sys
import urllib.parse


def when(ts):
    return datetime.datetime.fromtimestamp(ts, tz=datetime.timezone.utc)


def stripe_sig(secret, ts, body):
    import stripe

    # stripe-python's own tests sign this way (there is no public signer).
    return stripe.WebhookSignature._compute_signature(f"{ts}.{body}", secret)


def sign(r):
    scheme, secret, body, ts = r["scheme"], r["secret"], r["body"], r["timestamp"]
    msg_id = r.get("id", "msg_test")
    if scheme == "stripe":
        return {"Stripe-Signature": f"t={ts},v1={stripe_sig(secret, ts, body)}"}
    if scheme == "whop-legacy":
        return {"x-whop-signature": f"t={ts},v1={stripe_sig(secret, ts, body)}"}
    if scheme in ("standard-webhooks", "whop"):
        from standardwebhooks.webhooks import Webhook

        # Whop HMACs with the literal bytes of its ws_ secret: standardwebhooks
        # takes base64 key material, so Whop's docs pass base64(secret).
        key = base64.b64encode(secret.encode()).decode() if scheme == "whop" else secret
        sig = Webhook(key).sign(msg_id, when(ts), body)
        return {"webhook-id": msg_id, "webhook-timestamp": str(ts), "webhook-signature": sig}
    if scheme == "svix":
        from svix.webhooks import Webhook

        sig = Webhook(secret).sign(msg_id, when(ts), body)
        return {"svix-id": msg_id, "svix-timestamp": str(ts), "svix-signature": sig}
    if scheme == "slack":
        from slack_sdk.signature import SignatureVerifier

        sig = SignatureVerifier(secret).generate_signature(timestamp=str(ts), body=body)
        return {"X-Slack-Signature": sig, "X-Slack-Request-Timestamp": str(ts)}
    if scheme == "twilio":
        from twilio.request_validator import RequestValidator

        params = dict(urllib.parse.parse_qsl(body, keep_blank_values=True))
        return {"X-Twilio-Signature": RequestValidator(secret).compute_signature(r["url"], params)}
    if scheme == "twilio-json":
        from twilio.request_validator import RequestValidator

        v = RequestValidator(secret)
        url = r["url"] + ("&" if "?" in r["url"] else "?") + "bodySHA256=" + v.compute_hash(body)
        return {"X-Twilio-Signature": v.compute_signature(url, {}), "_url": url}
    if scheme == "close":
        data = (str(ts) + body).encode()
        return {
            "close-sig-hash": hmac.new(bytes.fromhex(secret), data, hashlib.sha256).hexdigest(),
            "close-sig-timestamp": str(ts),
        }
    if scheme == "custom-hmac":
        # The generic `scheme: hmac` route of the tests: SHA-512, base64, a
        # prefix, and a template that signs a header too.
        data = f"{ts}.acme.{body}".encode()
        sig = base64.b64encode(hmac.new(secret.encode(), data, hashlib.sha512).digest()).decode()
        return {"X-Custom-Signature": "sha512=" + sig, "X-Custom-Timestamp": str(ts), "X-Tenant": "acme"}
    if scheme == "github-sha1":
        # GitHub's legacy header; @octokit/webhooks-methods 6 signs only SHA-256.
        return {"X-Hub-Signature": "sha1=" + hmac.new(secret.encode(), body.encode(), hashlib.sha1).hexdigest()}
    if scheme == "paddle":
        mac = hmac.new(secret.encode(), f"{ts}:{body}".encode(), hashlib.sha256).hexdigest()
        return {"Paddle-Signature": f"ts={ts};h1={mac}"}
    raise SystemExit(f"sign.py: unknown scheme {scheme}")


json.dump([sign(r) for r in json.load(sys.stdin)], sys.stdout)
