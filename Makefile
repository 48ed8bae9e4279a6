# Build and install llmspool (see README "Run it as a service").
#
#   make install [PREFIX=/usr/local] [DESTDIR=/tmp/stage]   build release, install
#   make uninstall [PREFIX=…] [DESTDIR=…]                    remove exactly what install installs
#   make install SKIP_BUILD=1 BIN_DIR=.build/debug           install binaries built already
#   make demo / make test                                    scripts/demo, scripts/test (each installs the
#                                                            Debian packages the build needs first, as root)
#
# Layout (PREFIX=/usr/local):
#   $(PREFIX)/bin/llmspool, llmspool-cgi                     0755
#   $(PREFIX)/lib/systemd/system/llmspool-worker.service,    0644  (UNITDIR; systemd reads it)
#     llmspool-worker@.service, llmspool-bridge.service             (every unit in systemd/)
#   $(PREFIX)/lib/sysusers.d/llmspool.conf                   0644  (SYSUSERSDIR)
#   $(PREFIX)/lib/tmpfiles.d/llmspool.conf                   0644  (TMPFILESDIR)
#   $(PREFIX)/share/doc/llmspool/*.md, contrib/*              0644  (DOCDIR; contrib/llmspool.json is the
#                                                                    example /etc/llmspool/llmspool.json)
# Units and the example web-server configs name $(PREFIX)/bin and $(PREFIX)/share/doc/llmspool;
# their /usr/local paths are rewritten when PREFIX differs. systemd looks for units, sysusers.d and
# tmpfiles.d files under /usr/local/lib and /usr/lib; for another PREFIX set UNITDIR=/etc/systemd/system
# SYSUSERSDIR=/etc/sysusers.d TMPFILESDIR=/etc/tmpfiles.d.

PREFIX      ?= /usr/local
DESTDIR     ?=
BINDIR      ?= $(PREFIX)/bin
LIBDIR      ?= $(PREFIX)/lib
UNITDIR     ?= $(LIBDIR)/systemd/system
SYSUSERSDIR ?= $(LIBDIR)/sysusers.d
TMPFILESDIR ?= $(LIBDIR)/tmpfiles.d
DOCDIR      ?= $(PREFIX)/share/doc/llmspool

SWIFT       ?= swift
SWIFTFLAGS  ?=
BIN_DIR     ?= .build/release
SKIP_BUILD  ?=
INSTALL     ?= install

BINARIES := llmspool llmspool-cgi
UNITS    := $(notdir $(wildcard systemd/*.service systemd/*.socket systemd/*.timer))
CONTRIB  := $(notdir $(wildcard contrib/*))
DOCS     := README.md $(wildcard docs/*.md)

# The paths in the source files, and what they become.
REWRITE := sed -e 's|/usr/local/bin/|$(BINDIR)/|g' -e 's|/usr/local/share/doc/llmspool|$(DOCDIR)|g'

.PHONY: all build install uninstall demo test

all: build

build:
	$(SWIFT) build -c release $(SWIFTFLAGS)

demo:
	scripts/demo

test:
	scripts/test

ifeq ($(SKIP_BUILD),)
install: build
endif

install:
	$(INSTALL) -d -m 0755 $(DESTDIR)$(BINDIR) $(DESTDIR)$(UNITDIR) $(DESTDIR)$(SYSUSERSDIR) \
		$(DESTDIR)$(TMPFILESDIR) $(DESTDIR)$(DOCDIR) $(DESTDIR)$(DOCDIR)/contrib
	for b in $(BINARIES); do $(INSTALL) -m 0755 $(BIN_DIR)/$$b $(DESTDIR)$(BINDIR)/$$b || exit 1; done
	for u in $(UNITS); do $(REWRITE) systemd/$$u > $(DESTDIR)$(UNITDIR)/$$u && chmod 0644 $(DESTDIR)$(UNITDIR)/$$u || exit 1; done
	$(INSTALL) -m 0644 systemd/sysusers.d/llmspool.conf $(DESTDIR)$(SYSUSERSDIR)/llmspool.conf
	$(INSTALL) -m 0644 systemd/tmpfiles.d/llmspool.conf $(DESTDIR)$(TMPFILESDIR)/llmspool.conf
	for c in $(CONTRIB); do $(REWRITE) contrib/$$c > $(DESTDIR)$(DOCDIR)/contrib/$$c && chmod 0644 $(DESTDIR)$(DOCDIR)/contrib/$$c || exit 1; done
	$(INSTALL) -m 0644 $(DOCS) $(DESTDIR)$(DOCDIR)/

uninstall:
	rm -f $(addprefix $(DESTDIR)$(BINDIR)/,$(BINARIES))
	rm -f $(addprefix $(DESTDIR)$(UNITDIR)/,$(UNITS))
	rm -f $(DESTDIR)$(SYSUSERSDIR)/llmspool.conf $(DESTDIR)$(TMPFILESDIR)/llmspool.conf
	rm -f $(addprefix $(DESTDIR)$(DOCDIR)/contrib/,$(CONTRIB)) $(addprefix $(DESTDIR)$(DOCDIR)/,$(notdir $(DOCS)))
	-rmdir $(DESTDIR)$(DOCDIR)/contrib $(DESTDIR)$(DOCDIR) 2>/dev/null
