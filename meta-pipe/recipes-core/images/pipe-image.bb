SUMMARY = "A Raspberry Pi camera image running pipe"
DESCRIPTION = "A minimal systemd image with pipe (service pipe.service, user pipe in group video) \
               and the GStreamer elements its capture chains need. On first boot \
               'journalctl -u pipe' shows the claim link and QR code, and \
               http://127.0.0.1:8080/local shows them on the camera itself."
SECTION = "images"
LICENSE = "MIT"

inherit core-image features_check

REQUIRED_DISTRO_FEATURES = "pipe systemd"

IMAGE_FEATURES += "ssh-server-dropbear"

IMAGE_INSTALL = "packagegroup-core-boot \
                 packagegroup-pipe \
                 ${CORE_IMAGE_EXTRA_INSTALL} \
                 "
