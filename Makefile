# core-iscsi: build the kernel module and the tools; install; demo; check.
#
#   make                  module (against KDIR) and tools
#   make modules          the module only      make tools     the tools only
#   make install          tools, scripts, man pages, example config, and the module when KDIR
#                         can build it (else one line says why it was skipped); honours DESTDIR
#   make install-tools    everything but the module      make uninstall   remove what install put
#   make install-dkms     the module's source under /usr/src/core-iscsi-VERSION for DKMS
#   make check            every test: cargo tests, interop, the VM end-to-end tests
#   make demo             boot the test VM and show the main job
#
# KDIR   kernel build tree (default: the running kernel's); it must have CONFIG_RUST=y
# RUSTC  the rustc that built KDIR (default: found by its version, /usr/bin/rustc first)

KDIR ?= /lib/modules/$(shell uname -r)/build
BINDGEN ?= $(shell command -v bindgen 2>/dev/null)
CARGO ?= cargo
DESTDIR ?=
PREFIX ?= /usr
SBINDIR ?= $(PREFIX)/sbin
MANDIR ?= $(PREFIX)/share/man
SYSCONFDIR ?= /etc
INITDIR ?= $(SYSCONFDIR)/init.d
SYSTEMDUNITDIR ?= $(PREFIX)/lib/systemd/system

# The rustc that built KDIR: the module must be compiled by the same version (E0514 otherwise).
kdir_rustc_version := $(shell sed -n 's/^CONFIG_RUSTC_VERSION_TEXT="\{0,1\}\([^"]*\)"\{0,1\}$$/\1/p' \
	$(KDIR)/include/config/auto.conf 2>/dev/null)
find_rustc = $(firstword $(foreach r,/usr/bin/rustc $(shell command -v rustc 2>/dev/null),\
	$(if $(shell test "$$($(r) --version 2>/dev/null)" = "$(kdir_rustc_version)" && echo y),$(r))))
RUSTC ?= $(or $(find_rustc),/usr/bin/rustc)

VERSION := $(shell sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml 2>/dev/null | head -n1)
DKMS_SRC ?= /usr/src/core-iscsi-$(VERSION)

.PHONY: all modules tools install install-modules install-tools install-dkms uninstall check \
	demo clean distclean check-kdir

all: modules tools

# Why the module cannot be built against KDIR, in one line (empty when it can): the first
# missing piece, in the order the build needs them.
kdir_problem = $(strip \
	$(if $(wildcard $(KDIR)/.),\
	$(if $(wildcard $(KDIR)/include/config/auto.conf),\
	$(if $(shell grep -qx 'CONFIG_RUST=y' $(KDIR)/include/config/auto.conf && echo y),\
	$(if $(wildcard $(KDIR)/rust/libkernel.rmeta),\
	$(if $(BINDGEN),\
	$(if $(shell test "$$($(RUSTC) --version 2>/dev/null)" = "$(kdir_rustc_version)" && echo y),,\
		$(KDIR) was built with '$(kdir_rustc_version)' but RUSTC=$(RUSTC) is another version: pass RUSTC=/path/to/that rustc (a mismatch fails with E0514)),\
		bindgen not found: cargo install bindgen-cli),\
		$(KDIR) has no built Rust kernel crate (rust/libkernel.rmeta): build the kernel or run its make modules_prepare first),\
		the kernel in $(KDIR) was built without CONFIG_RUST=y: core-iscsi needs a Rust-enabled kernel),\
		$(KDIR) is not a configured kernel build tree (no include/config/auto.conf)),\
		KDIR=$(KDIR) does not exist: install the build tree of a CONFIG_RUST kernel or pass KDIR=/path/to/it))

# One clear line (make's "*** ... Stop.") for each way the module build can fail before Kbuild.
check-kdir:
	$(if $(kdir_problem),$(error $(kdir_problem)))
	@:

modules: check-kdir
	$(MAKE) -C $(KDIR) M=$(CURDIR) RUSTC=$(RUSTC) BINDGEN=$(BINDGEN) modules

tools:
	$(CARGO) build --release -p core-iscsi-tools

# What install-tools installs from the cargo build: built only when missing or older than a
# source, so `sudo make install` after `make` runs no cargo as root.
TOOLS_BIN := target/release/initiator-ctl target/release/initiator-iname
TOOLS_SRC := $(shell find tools/src tools/Cargo.toml kernel/proto/src kernel/proto/Cargo.toml \
	Cargo.toml Cargo.lock -type f 2>/dev/null)

$(TOOLS_BIN) &: $(TOOLS_SRC)
	$(CARGO) build --release -p core-iscsi-tools

# The module is installed when KDIR can build it; otherwise one line says why, and the rest
# is installed all the same (DKMS can build the module later: README).
install: install-tools
	@$(if $(kdir_problem),echo "make install: module not installed: $(kdir_problem); installed the tools$(comma) scripts$(comma) man pages and examples (for the module see README$(comma) DKMS)",$(MAKE) --no-print-directory install-modules)

comma := ,

install-modules: modules
	$(MAKE) -C $(KDIR) M=$(CURDIR) RUSTC=$(RUSTC) BINDGEN=$(BINDGEN) \
		INSTALL_MOD_PATH=$(DESTDIR) INSTALL_MOD_DIR=extra modules_install

install-tools: $(TOOLS_BIN)
	install -d $(DESTDIR)$(SBINDIR) $(DESTDIR)$(MANDIR)/man5 $(DESTDIR)$(MANDIR)/man8 \
		$(DESTDIR)$(SYSCONFDIR)/sysconfig $(DESTDIR)$(INITDIR) $(DESTDIR)$(SYSTEMDUNITDIR)
	for b in $(TOOLS_BIN); do install -m 755 -s $$b $(DESTDIR)$(SBINDIR)/; done
	# The init script, the map scripts, and the systemd unit that calls the init script.
	for s in init.d/*; do [ -f "$$s" ] || continue; \
		case $$s in \
		*.service) sed 's|@INITDIR@|$(INITDIR)|g' $$s > $(DESTDIR)$(SYSTEMDUNITDIR)/$${s##*/}; \
			chmod 644 $(DESTDIR)$(SYSTEMDUNITDIR)/$${s##*/}; continue;; \
		init.d/initiator) d=$(DESTDIR)$(INITDIR);; *) d=$(DESTDIR)$(SBINDIR);; esac; \
		install -m 755 $$s $$d/; done
	for m in Documentation/man/*.[58]; do [ -f "$$m" ] || continue; \
		install -m 644 $$m $(DESTDIR)$(MANDIR)/man$${m##*.}/; done
	# An administrator's files are never overwritten; the secrets file is private.
	for f in sysconfig/*; do [ -f "$$f" ] || continue; \
		t=$(DESTDIR)$(SYSCONFDIR)/sysconfig/$${f##*/}; \
		if [ -e "$$t" ]; then echo "keeping existing $$t"; \
		else case $$f in *_auth) mode=600;; *) mode=644;; esac; install -m $$mode $$f $$t; fi; done

# The module's sources as DKMS wants them: /usr/src/core-iscsi-VERSION with dkms.conf; then
# dkms add core-iscsi/VERSION, dkms build ..., dkms install ... (README).
install-dkms:
	install -d $(DESTDIR)$(DKMS_SRC)
	tar -cf - --exclude=generated --exclude='*.o' --exclude='*.ko' --exclude='*.mod*' \
		--exclude='.*.cmd' --exclude='*.txt' --exclude=target --exclude=fuzz \
		--exclude=benches --exclude=tests Makefile Kbuild dkms.conf Cargo.toml kernel \
		| tar -xf - -C $(DESTDIR)$(DKMS_SRC)
	sed -i 's/^PACKAGE_VERSION=.*/PACKAGE_VERSION="$(VERSION)"/' $(DESTDIR)$(DKMS_SRC)/dkms.conf

# Removes what install put, but never an administrator's file: a sysconfig file that differs
# from the example shipped, and /etc/initiatorname.iscsi, stay.
uninstall:
	rm -f $(DESTDIR)$(SBINDIR)/initiator-ctl $(DESTDIR)$(SBINDIR)/initiator-iname
	for s in init.d/*; do case $$s in \
		*.service) rm -f $(DESTDIR)$(SYSTEMDUNITDIR)/$${s##*/};; \
		init.d/initiator) rm -f $(DESTDIR)$(INITDIR)/initiator;; \
		*) rm -f $(DESTDIR)$(SBINDIR)/$${s##*/};; esac; done
	for m in Documentation/man/*.[58]; do rm -f $(DESTDIR)$(MANDIR)/man$${m##*.}/$${m##*/}; done
	for f in sysconfig/*; do t=$(DESTDIR)$(SYSCONFDIR)/sysconfig/$${f##*/}; \
		[ -e "$$t" ] || continue; \
		if cmp -s "$$f" "$$t"; then rm -f "$$t"; else echo "keeping $$t (changed: yours)"; fi; done
	-rmdir $(DESTDIR)$(SYSCONFDIR)/sysconfig 2>/dev/null
	[ ! -e $(DESTDIR)$(SYSCONFDIR)/initiatorname.iscsi ] || \
		echo "keeping $(DESTDIR)$(SYSCONFDIR)/initiatorname.iscsi (this host's iSCSI name)"
	rm -f $(DESTDIR)/lib/modules/*/extra/core_iscsi.ko
	rm -rf $(DESTDIR)$(DKMS_SRC)

check:
	tests/vm/install-deps
	$(CARGO) test --workspace
	tests/install/run
	tests/run-vm-tests

demo:
	tests/vm/install-deps
	tests/vm/run tests/demo.sh

clean:
	-test -d "$(KDIR)" && $(MAKE) -C $(KDIR) M=$(CURDIR) clean
	rm -rf kernel/sys/generated

distclean: clean
	$(CARGO) clean
