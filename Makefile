# Larger runs of the marked parts of the test suite; CI runs them with small budgets through
# `./dev test`. Sizes come from the environment: `make fuzz SEED=7 EXAMPLES=100`.

.PHONY: fuzz
fuzz:
	./dev fuzz
