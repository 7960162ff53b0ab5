# Two commands set everything up on a fresh machine: `make repro` and `make test`.
VENV ?= .venv
BIN := $(abspath $(VENV))/bin
export PATH := $(BIN):$(PATH)

.PHONY: install repro smoke test bench clean

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test]'
	# A test-only reference implementation; its own pins would downgrade numpy and torch.
	$(BIN)/python -m pip install -q --no-deps torchattacks==3.5.1
	touch $@

install: $(VENV)/.installed

repro: install  ## the default-profile benchmark
	[ -d .dvc ] || dvc init -q
	dvc repro

smoke: install  ## the whole pipeline on the smoke profile, in a scratch copy
	advgen smoke

test: install  ## every test, including an end-to-end smoke `dvc repro`
	python -m pytest -q tests

bench: install
	python benchmarks/bench_train.py

clean:
	rm -rf $(VENV)

# Mutation testing (docs/mutation.md): the pure-computation modules listed in pyproject.toml's
# [tool.mutmut], smoothing.py only in its certification functions (its EOT attack and the stage's
# evaluation train nothing but cost seconds per mutant). One worker and one thread: on a 2-core
# machine the other core stays free. Results are cached in mutants/ (delete it for a fresh run).
MUTATE_SCOPE := 'advgen.stats.*' 'advgen.metrics.*' 'advgen.generative.scores.*' \
	'advgen.backdoors.poison.*' 'advgen.attacks.fgsm.*' 'advgen.attacks.base.*' \
	'advgen.schema.*' 'advgen.attacks.params.*' 'advgen.defenses.params.*' 'advgen.backdoors.params.*' \
	'advgen.generative.params.*' \
	$(foreach f,sigma_of _check _noisy_batches sample_counts _top_two predict lower_confidence_bound certify \
	  certified_correct certified_accuracy certificate_check radius_grid,'advgen.defenses.smoothing.x_$(f)__mutmut_*')

.PHONY: mutate
mutate: install  ## mutation score per module (killed / total), one worker
	OMP_NUM_THREADS=1 mutmut run --max-children 1 $(MUTATE_SCOPE)
	mutmut results --all true | python -c "import collections, re, sys; \
	  c = collections.defaultdict(collections.Counter); \
	  [c[re.sub(r'\.x[_ǁ].*', '', m.group(1))].update([m.group(2)]) \
	   for m in (re.match(r'\s*(\S+__mutmut_\d+): (.+)', l) for l in sys.stdin) if m and m.group(2) != 'not checked']; \
	  [print(f'{k:32} killed {v[\"killed\"]:4} / {sum(v.values()):4} = {100 * v[\"killed\"] / sum(v.values()):5.1f}%  {dict(v)}') \
	   for k, v in sorted(c.items())]"
