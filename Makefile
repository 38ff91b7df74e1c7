# Two commands on a fresh machine with Python 3.11+ and make:
#   make run    set up and start the daemon on embedded defaults (state under ./var)
#   make test   set up (including the SFTP clients/servers the tests drive) and run every test
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: run test check lint types install system-deps package-check bench clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $@

install: $(BIN)/.installed

run: install
	$(BIN)/rostergate --demo serve

system-deps:
	scripts/install-system-deps

# The gates CI runs (through `make test`, the README's test command; CONTRIBUTING.md "Gates"): ruff on
# src, tests and bench; mypy --strict on src; the package as an operator installs it; the tests with
# every warning an error (tests/test_architecture.py holds DESIGN.md's import rules; tests/deploy/ the
# systemd unit).
check: lint types install system-deps package-check
	$(BIN)/pytest -q

# sdist + wheel, the wheel installed into a fresh venv, the installed command run (about 30 s).
package-check: install
	BUILDER=$(BIN)/python PYTHON=$(PYTHON) scripts/package-check

lint: install
	$(BIN)/ruff check src tests bench

types: install
	$(BIN)/mypy

test: check

# Every figure of issue 14 on the real path (the daemon, OpenSSH clients, OpenSSH sshd downstream),
# then prepare()/validate/diff alone as a breakdown, then the 1k -> 1M scaling chart; each writes its
# section of bench/results/latest.{json,md} (about 20-30 min on 2 cores). BENCH_QUICK=1 make bench:
# small sizes and one round, a smoke run of the scripts (not figures). Never part of the test run.
BENCH_SCRIPTS := intake forward latency parallel sftp_processes cli validate convert diff scale

$(BIN)/.bench-installed: $(BIN)/.installed
	$(BIN)/pip install -q -e '.[bench]'
	touch $@

bench: $(BIN)/.bench-installed
	set -e; for name in $(BENCH_SCRIPTS); do echo "== bench/bench_$$name.py"; $(BIN)/python bench/bench_$$name.py; done

clean:
	rm -rf $(VENV) var .pytest_cache .hypothesis
