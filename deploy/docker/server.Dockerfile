# hodei server, FROM scratch: one static binary. Do not build from the
# repo root: `make image` stages the context with
# deploy/docker/context.sh server BINARY DIR and builds DIR.
#
# State lives in /data (mount a volume there; it must be writable by
# uid 65532). Both listeners bind every interface so a published port
# (-p 7070:7070 -p 8080:8080) reaches them; the generated certificate
# needs --tls-san for the name clients dial.
FROM scratch
COPY rootfs/ /
COPY --chown=65532:65532 owned /data
ENV HODEI_DATA=/data \
    HODEI_LISTEN=0.0.0.0:7070 \
    HODEI_HTTP=0.0.0.0:8080
WORKDIR /data
USER 65532:65532
EXPOSE 7070 8080
ENTRYPOINT ["/usr/local/bin/hodei", "server"]
