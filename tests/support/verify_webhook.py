#!/usr/bin/env python3
"""Verifies one webhook delivery with the reference Standard Webhooks library (PyPI
`standardwebhooks`), independently of smsgate's own signer.

usage: verify_webhook.py SECRET WEBHOOK_ID WEBHOOK_TIMESTAMP WEBHOOK_SIGNATURE < BODY

Exit status: 0 verified, 1 verification failed, 2 bad usage, 3 `standardwebhooks` missing.
"""
import sys

try:
    from standardwebhooks import Webhook
    from standardwebhooks.webhooks import WebhookVerificationError
except ImportError as e:
    print(f"standardwebhooks is not installed ({e}); pip install standardwebhooks", file=sys.stderr)
    sys.exit(3)


def main() -> int:
    if len(sys.argv) != 5:
        print(__doc__, file=sys.stderr)
        return 2
    secret, msg_id, timestamp, signature = sys.argv[1:]
    body = sys.stdin.buffer.read()
    headers = {
        "webhook-id": msg_id,
        "webhook-timestamp": timestamp,
        "webhook-signature": signature,
    }
    try:
        Webhook(secret).verify(body, headers)
    except WebhookVerificationError as e:
        print(f"verification failed: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
