# Larger runs of the marked parts of the test suite; CI runs them with small budgets through
# `./dev test`. Sizes come from the environment: `make fuzz SEED=7 EXAMPLES=100`,
# `make chaos CHAOS_REQUESTS=2000` (docs/reliability.md, "Faults").

CHAOS_REQUESTS ?= 600
CHAOS_CLIENTS ?= 12
CHAOS_KILLS ?= 4
CHAOS_DB_RESTARTS ?= 6
CHAOS_HOLDS ?= 200
CHAOS_WEBHOOKS ?= 10
export CHAOS_REQUESTS CHAOS_CLIENTS CHAOS_KILLS CHAOS_DB_RESTARTS CHAOS_HOLDS CHAOS_WEBHOOKS

.PHONY: fuzz chaos
fuzz:
	./dev fuzz

chaos:
	./dev test -m chaos -p no:cacheprovider -s tests/chaos
