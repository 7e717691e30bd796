# core-iscsi: build the kernel module and the tools; install; demo; check.
#
#   make                  module (against KDIR) and tools
#   make modules          the module only      make tools     the tools only
#   make install          module, tools, scripts, man pages, example config (honours DESTDIR)
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

.PHONY: all modules tools install install-modules install-tools check demo clean distclean check-kdir

all: modules tools

# One clear line (make's "*** ... Stop.") for each way the module build can fail before Kbuild.
check-kdir:
	$(if $(wildcard $(KDIR)/.),,$(error KDIR=$(KDIR) does not exist: install the build tree of a CONFIG_RUST kernel or pass KDIR=/path/to/it))
	$(if $(wildcard $(KDIR)/include/config/auto.conf),,$(error $(KDIR) is not a configured kernel build tree (no include/config/auto.conf)))
	$(if $(shell grep -qx 'CONFIG_RUST=y' $(KDIR)/include/config/auto.conf && echo y),,$(error the kernel in $(KDIR) was built without CONFIG_RUST=y: core-iscsi needs a Rust-enabled kernel))
	$(if $(wildcard $(KDIR)/rust/libkernel.rmeta),,$(error $(KDIR) has no built Rust kernel crate (rust/libkernel.rmeta): build the kernel or run its make modules_prepare first))
	$(if $(BINDGEN),,$(error bindgen not found: cargo install bindgen-cli))
	$(if $(shell test "$$($(RUSTC) --version 2>/dev/null)" = "$(kdir_rustc_version)" && echo y),,$(error $(KDIR) was built with '$(kdir_rustc_version)' but RUSTC=$(RUSTC) is another version: pass RUSTC=/path/to/that rustc (a mismatch fails with E0514)))
	@:

modules: check-kdir
	$(MAKE) -C $(KDIR) M=$(CURDIR) RUSTC=$(RUSTC) BINDGEN=$(BINDGEN) modules

tools:
	$(CARGO) build --release -p core-iscsi-tools

install: install-modules install-tools

install-modules: modules
	$(MAKE) -C $(KDIR) M=$(CURDIR) RUSTC=$(RUSTC) BINDGEN=$(BINDGEN) \
		INSTALL_MOD_PATH=$(DESTDIR) INSTALL_MOD_DIR=extra modules_install

install-tools: tools
	install -d $(DESTDIR)$(SBINDIR) $(DESTDIR)$(MANDIR)/man5 $(DESTDIR)$(MANDIR)/man8 \
		$(DESTDIR)$(SYSCONFDIR)/sysconfig $(DESTDIR)$(INITDIR) $(DESTDIR)$(SYSTEMDUNITDIR)
	for b in $$(ls target/release/ | grep -E '^(initiator-ctl|initiator-iname)$$'); do \
		install -m 755 target/release/$$b $(DESTDIR)$(SBINDIR)/$$b; done
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

check:
	tests/vm/install-deps
	$(CARGO) test --workspace
	tests/run-vm-tests

demo:
	tests/vm/install-deps
	tests/vm/run tests/demo.sh

clean:
	-test -d "$(KDIR)" && $(MAKE) -C $(KDIR) M=$(CURDIR) clean
	rm -rf kernel/sys/generated

distclean: clean
	$(CARGO) clean
