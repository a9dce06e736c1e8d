#!/usr/bin/env bash
# Installs aiosmtpd (the real SMTP server the notification tests deliver to) under .tools/,
# once; prints the path of its python. Tests start their own server with it:
# `PYTHON -m aiosmtpd -n -l 127.0.0.1:PORT -c aiosmtpd.handlers.Mailbox DIR`.
exec "$(dirname "$0")/pyvenv.sh" aiosmtpd 1.4.6 aiosmtpd
