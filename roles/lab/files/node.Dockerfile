# The lab's node image: a Debian bookworm host with Docker Engine and the
# kernel tools the toolkit drives. FROM the debootstrap-built base image.
ARG BASE=swarmfabric/base:bookworm
FROM $BASE
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      docker.io iproute2 nftables iptables ipvsadm python3 tcpdump curl \
      busybox-static ca-certificates procps kmod \
 && rm -rf /var/lib/apt/lists/*
COPY sf-task-image /usr/local/sbin/sf-task-image
COPY sf-entrypoint /usr/local/sbin/sf-entrypoint
RUN chmod 0755 /usr/local/sbin/sf-task-image /usr/local/sbin/sf-entrypoint \
 && /usr/local/sbin/sf-task-image /opt/swarmfabric/task.tar
ENTRYPOINT ["/usr/local/sbin/sf-entrypoint"]
