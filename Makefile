# Build and install sanlock-msg: the binary, its manual page, the systemd
# unit, /etc/default/sanlock-msg and the Python client.
#
#   make                         build ./sanlock-msg
#   make install                 install under PREFIX (/usr/local)
#   make install DESTDIR=/tmp/x PREFIX=/usr   stage a package
#   make uninstall               remove what install put there (not the
#                                configuration in /etc/default)
#
# Go comes from PATH, else /usr/local/go/bin. The Python package is
# installed with pip from the source tree, offline (--no-index,
# --no-build-isolation: Debian's python3-setuptools and python3-wheel).

PREFIX     ?= /usr/local
BINDIR     ?= $(PREFIX)/bin
MANDIR     ?= $(PREFIX)/share/man
# systemd reads units from /usr/local/lib/systemd/system and /usr/lib/systemd/system.
UNITDIR    ?= $(PREFIX)/lib/systemd/system
SYSCONFDIR ?= /etc
PYTHON     ?= /usr/bin/python3
# The directory of PREFIX that PYTHON imports from (Debian:
# /usr/local/lib/python3.X/dist-packages, /usr/lib/python3/dist-packages).
PYTHONDIR  ?= $(shell $(PYTHON) -c 'import sys; print(next((p for p in sys.path if p.startswith("$(PREFIX)/lib") and p.endswith(("dist-packages", "site-packages"))), "$(PREFIX)/lib/python3/dist-packages"))')
VERSION    ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo 0.1.0-dev)
GO         ?= $(shell command -v go || echo /usr/local/go/bin/go)

.PHONY: all sanlock-msg install uninstall test demo clean

all: sanlock-msg

# Always rebuilt: go's cache makes that cheap, and make cannot see Go's
# dependencies.
sanlock-msg:
	$(GO) build -trimpath -ldflags "-X main.version=$(VERSION)" -o $@ ./cmd/sanlock-msg

install: sanlock-msg
	install -D -m 0755 sanlock-msg $(DESTDIR)$(BINDIR)/sanlock-msg
	install -D -m 0644 man/sanlock-msg.8 $(DESTDIR)$(MANDIR)/man8/sanlock-msg.8
	install -d $(DESTDIR)$(UNITDIR)
	sed 's|@BINDIR@|$(BINDIR)|g' systemd/sanlock-msg.service > $(DESTDIR)$(UNITDIR)/sanlock-msg.service
	chmod 0644 $(DESTDIR)$(UNITDIR)/sanlock-msg.service
	@# The admin's options are kept.
	if [ ! -e $(DESTDIR)$(SYSCONFDIR)/default/sanlock-msg ]; then \
		install -D -m 0644 systemd/sanlock-msg.default $(DESTDIR)$(SYSCONFDIR)/default/sanlock-msg; fi
	$(PYTHON) -m pip install --quiet --no-build-isolation --no-deps --no-index --upgrade \
		--target $(DESTDIR)$(PYTHONDIR) ./python
	@echo "installed; as root: systemctl daemon-reload && systemctl enable --now sanlock-msg"

uninstall:
	rm -f $(DESTDIR)$(BINDIR)/sanlock-msg $(DESTDIR)$(MANDIR)/man8/sanlock-msg.8 \
		$(DESTDIR)$(UNITDIR)/sanlock-msg.service
	rm -rf $(DESTDIR)$(PYTHONDIR)/sanlock_msg $(DESTDIR)$(PYTHONDIR)/sanlock_msg-*.dist-info

test:
	./scripts/test.sh

demo:
	./scripts/demo.sh

clean:
	rm -f sanlock-msg
	rm -rf python/build python/*.egg-info
