# Two commands do all set-up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
PIP ?= $(PYTHON) -m pip
APT_PACKAGES = fonts-noto-color-emoji fonts-symbola unicode-data chromium chromium-driver
STAMP = .make/installed

.PHONY: install system-deps demo demo-quick test test-fast bench clean

$(STAMP): pyproject.toml
	$(MAKE) system-deps
	$(PIP) install --quiet "torch>=2.1" "torchvision>=0.16" || $(PIP) install --quiet torch==2.14.1 torchvision==0.29.1
	$(PIP) install --quiet -e ".[dev,ray,app,openclip]"
	mkdir -p .make && touch $(STAMP)

install: $(STAMP)

# The emoji benchmark renders glyphs from Debian's fonts and names from unicode-data;
# the app's browser test drives Debian's headless chromium through chromium-driver.
system-deps:
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi

demo: $(STAMP)
	dvpt demo

demo-quick: $(STAMP)
	dvpt demo --quick

test: $(STAMP)
	DVPT_NO_PROGRESS=1 $(PYTHON) -m pytest -q

test-fast: $(STAMP)
	DVPT_NO_PROGRESS=1 $(PYTHON) -m pytest -q -m "not slow"

bench: $(STAMP)
	dvpt bench

clean:
	rm -rf .make build dist src/*.egg-info .pytest_cache
