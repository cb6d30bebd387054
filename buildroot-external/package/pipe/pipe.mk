################################################################################
#
# pipe
#
################################################################################

ifeq ($(BR2_PACKAGE_PIPE_SOURCE_TARBALL),y)
PIPE_TARBALL = $(call qstrip,$(BR2_PACKAGE_PIPE_TARBALL_LOCATION))
PIPE_SITE = $(patsubst %/,%,$(dir $(PIPE_TARBALL)))
PIPE_SOURCE = $(notdir $(PIPE_TARBALL))
PIPE_VERSION = $(patsubst pipe-%.tar.gz,%,$(PIPE_SOURCE))
else
# The pipe tree this BR2_EXTERNAL lives in; its version is Cargo.toml's.
PIPE_SITE = $(realpath $(BR2_EXTERNAL_PIPE_PATH)/..)
PIPE_SITE_METHOD = local
PIPE_VERSION = $(shell sed -n 's/^version = "\(.*\)"$$/\1/p' $(PIPE_SITE)/Cargo.toml 2>/dev/null | head -n 1)
# Build products and this tree are not sources of the pipe binary.
PIPE_OVERRIDE_SRCDIR_RSYNC_EXCLUSIONS = \
	--exclude /target --exclude /buildroot-external --exclude /node_modules

# The local site method has no download step, so Buildroot's cargo
# download post-process, which vendors the crates, does not run. Vendor
# them the same way here, once host-rustc is there: cargo vendor into
# VENDOR/ with the source replacement in .cargo/config.toml. cargo
# fetches the crates (or takes them from $(BR_CARGO_HOME)) and checks
# each against its checksum in Cargo.lock (--locked).
define PIPE_VENDOR_CRATES
	mkdir -p $(@D)/.cargo $(BR_CARGO_HOME)
	cd $(@D) && $(HOST_MAKE_ENV) CARGO_HOME=$(BR_CARGO_HOME) \
		flock $(BR_CARGO_HOME)/.br-lock \
		cargo vendor --locked VENDOR > .cargo/config.toml
endef
PIPE_PRE_CONFIGURE_HOOKS += PIPE_VENDOR_CRATES
endif

PIPE_LICENSE = MIT or Apache-2.0
PIPE_DEPENDENCIES = \
	gstreamer1 \
	gst1-plugins-base \
	gst1-plugins-good \
	gst1-plugins-bad \
	libnice \
	host-pkgconf

# gstreamer-sys and friends find GStreamer with pkg-config (Buildroot's
# wrapper points it at the staging directory).
PIPE_CARGO_ENV = PKG_CONFIG_ALLOW_CROSS=1

define PIPE_USERS
	pipe -1 pipe -1 * /var/lib/pipe - video pipe camera daemon
endef

define PIPE_INSTALL_CONFIG
	$(INSTALL) -d -m 0755 $(TARGET_DIR)/etc/pipe/pipelines
endef
PIPE_POST_INSTALL_TARGET_HOOKS += PIPE_INSTALL_CONFIG

define PIPE_INSTALL_INIT_SYSTEMD
	$(INSTALL) -D -m 0644 $(PIPE_PKGDIR)/pipe.service \
		$(TARGET_DIR)/usr/lib/systemd/system/pipe.service
	$(INSTALL) -D -m 0644 $(PIPE_PKGDIR)/50-pipe.preset \
		$(TARGET_DIR)/usr/lib/systemd/system-preset/50-pipe.preset
endef

define PIPE_INSTALL_INIT_SYSV
	$(INSTALL) -D -m 0755 $(PIPE_PKGDIR)/S99pipe \
		$(TARGET_DIR)/etc/init.d/S99pipe
endef

$(eval $(cargo-package))
