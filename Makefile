# Two commands do all the set-up on a fresh clone:
#   make book   -- create .venv from requirements.txt, execute every notebook, build the HTML book
#   make test   -- create the same .venv, run the pytest suite (fails if no test ran)
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: book test venv clean variations

venv: $(STAMP)

$(STAMP): requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt
	$(BIN)/python -m pip install --quiet --no-deps -e .
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 >/dev/null
	touch $(STAMP)

book: $(STAMP)
	rm -rf _build/.jupyter_cache
	$(BIN)/jupyter-book build . -W -n --keep-going
	@echo "Open _build/html/index.html"

test: $(STAMP)
	$(BIN)/python -m pytest

clean:
	rm -rf _build $(VENV)

# The suite as other machines would run it (PyTorch/NumPy/OpenBLAS kernels, thread counts, hypothesis
# seeds), with the assertions that came closest to their bounds: tests/variation_matrix.py.
variations: $(STAMP)
	$(BIN)/python tests/variation_matrix.py --out _build/variations.jsonl
