#!/usr/bin/env bash
# Installs localstripe (a stateful Stripe emulator from PyPI: customers, payment methods,
# PaymentIntents, test cards) under .tools/, once; prints the path of its python. Tests
# start their own emulator with it: `PYTHON -m localstripe --port PORT --from-scratch`.
exec "$(dirname "$0")/pyvenv.sh" localstripe 1.15.10 localstripe
