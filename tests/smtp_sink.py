"""A local SMTP server for the notification tests: aiosmtpd on 127.0.0.1, writing each message it accepts to
a directory, for the test to read back.

    smtp_sink.py --port PORT --out DIR [--mode starttls|tls|none] [--cert PEM --key PEM] [--login USER:PASSWORD]

`starttls` offers STARTTLS and refuses anything else before it; `tls` speaks TLS from the first byte; `none`
is plain text. With `--login`, AUTH is required and only that user and password are accepted. Each message
becomes `DIR/NNNN.eml` (the data as received) and `DIR/NNNN.json` (envelope sender, recipients, whether the
connection was encrypted, the user who logged in, and the message as Python's email package reads it:
headers decoded, each MIME part's type and decoded content, nested parts, attachments' file names), written before the server answers 250, so a client that
has its answer finds them. The line `ready` on standard output says the server accepts connections; it runs
until it is killed or its standard input closes.
"""

import argparse
import email
import email.policy
import itertools
import json
import os
import ssl
import logging
import sys

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword


def describe(part):
    """A MIME part as the test reads it: its type and decoded content, its file name when it is an attachment,
    and the parts of a nested multipart (an alternative inside a message with attachments)."""
    if part.is_multipart():
        return {"content_type": part.get_content_type(), "parts": [describe(p) for p in part.iter_parts()]}
    out = {"content_type": part.get_content_type(), "content": part.get_content()}
    if part.get_filename():
        out["filename"] = part.get_filename()
    return out


class Sink:
    def __init__(self, out):
        self.out = out
        self.numbers = itertools.count(1)

    async def handle_DATA(self, server, session, envelope):
        n = next(self.numbers)
        base = os.path.join(self.out, f"{n:04}")
        login = None
        if isinstance(session.auth_data, LoginPassword):
            login = session.auth_data.login.decode()
        meta = {
            "mail_from": envelope.mail_from,
            "rcpt_tos": envelope.rcpt_tos,
            "tls": server.transport.get_extra_info("ssl_object") is not None,
            "login": login,
        }
        msg = email.message_from_bytes(envelope.original_content, policy=email.policy.default)
        meta["headers"] = {k.lower(): str(v) for k, v in msg.items()}
        meta["content_type"] = msg.get_content_type()
        parts = list(msg.iter_parts()) if msg.is_multipart() else [msg]
        meta["parts"] = [describe(p) for p in parts]
        # The message first, its envelope last: a test that sees the .json finds the .eml complete.
        with open(base + ".eml.tmp", "wb") as f:
            f.write(envelope.original_content)
        os.rename(base + ".eml.tmp", base + ".eml")
        with open(base + ".json.tmp", "w") as f:
            json.dump(meta, f)
        os.rename(base + ".json.tmp", base + ".json")
        return "250 OK queued as " + f"{n:04}"


class Login:
    def __init__(self, user, password):
        self.user = user.encode()
        self.password = password.encode()

    def __call__(self, server, session, envelope, mechanism, auth_data):
        ok = (
            isinstance(auth_data, LoginPassword)
            and auth_data.login == self.user
            and auth_data.password == self.password
        )
        return AuthResult(success=ok, handled=False, auth_data=auth_data if ok else None)


def main():
    # aiosmtpd sets its own deprecated Session.login_data after every AUTH, and logs a warning about it.
    logging.getLogger("mail.log").setLevel(logging.ERROR)
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--mode", choices=["starttls", "tls", "none"], default="starttls")
    p.add_argument("--cert")
    p.add_argument("--key")
    p.add_argument("--login")
    a = p.parse_args()

    kwargs = {}
    if a.mode != "none":
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(a.cert, a.key)
        if a.mode == "starttls":
            kwargs.update(tls_context=context, require_starttls=True)
        else:
            kwargs.update(ssl_context=context)
    if a.login:
        user, password = a.login.split(":", 1)
        kwargs.update(authenticator=Login(user, password), auth_required=True)

    controller = Controller(Sink(a.out), hostname="127.0.0.1", port=a.port, **kwargs)
    controller.start()
    print("ready", flush=True)
    try:
        sys.stdin.read()
    finally:
        controller.stop()


if __name__ == "__main__":
    main()
