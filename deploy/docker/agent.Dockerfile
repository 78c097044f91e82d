# hodei-agent on busybox, FROM scratch: no distribution, no package
# manager, no network needed to build. Jobs run under busybox's /bin/sh.
# Do not build from the repo root: `make image` stages the context with
# deploy/docker/context.sh agent BINARY DIR and builds DIR.
FROM scratch
COPY rootfs/ /
# /work is the agent's work dir; it and /tmp are the writable places for
# the unprivileged user.
COPY --chown=65532:65532 owned /work
ENV PATH=/usr/local/bin:/usr/local/sbin:/usr/bin:/usr/sbin:/bin:/sbin \
    HOME=/work \
    HODEI_WORK_DIR=/work
WORKDIR /work
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/hodei-agent"]
