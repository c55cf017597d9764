#!/usr/bin/env bash
# Refresh the third-party web assets the hub serves from its package, so the API docs and
# the web console work on sites without Internet access (never a CDN): Swagger UI for
# /api/docs, and htmx, Apache ECharts and Leaflet for the console. Each comes from its npm
# package with its licence. Run from the checkout; commit the result. Versions may be given
# in the environment: SWAGGER=5.35.0 HTMX=2.0.11 ECHARTS=6.1.0 LEAFLET=1.9.4 scripts/vendor-web-assets.sh
set -euo pipefail
SWAGGER="${SWAGGER:-${1:-5.35.0}}"
HTMX="${HTMX:-2.0.11}"
ECHARTS="${ECHARTS:-6.1.0}"
LEAFLET="${LEAFLET:-1.9.4}"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

# fetch PACKAGE VERSION: unpacks the npm tarball into $tmp/PACKAGE/package
fetch() {
    mkdir -p "$tmp/$1"
    (cd "$tmp/$1" && npm pack --silent "$1@$2" >/dev/null && tar xzf ./*.tgz)
}

# copy SRC_DIR DEST_DIR FILE...: the files that exist; source map references dropped
copy() {
    local src="$1" dest="$2"; shift 2
    mkdir -p "$dest"
    for f in "$@"; do
        if [ -e "$src/$f" ]; then
            cp -r "$src/$f" "$dest/"
            case "$f" in
                *.js|*.css) sed -i '/^\/\/# sourceMappingURL=/d' "$dest/$(basename "$f")" ;;
            esac
        fi
    done
}

fetch swagger-ui-dist "$SWAGGER"
copy "$tmp/swagger-ui-dist/package" hub/api/static/swagger-ui \
    swagger-ui-bundle.js swagger-ui.css favicon-32x32.png LICENSE NOTICE
echo "swagger-ui-dist ${SWAGGER}" > hub/api/static/swagger-ui/VERSION

VENDOR=hub/console/static/vendor
fetch htmx.org "$HTMX"
copy "$tmp/htmx.org/package" "$VENDOR/htmx" dist/htmx.min.js LICENSE
echo "htmx.org ${HTMX}" > "$VENDOR/htmx/VERSION"

fetch echarts "$ECHARTS"
copy "$tmp/echarts/package" "$VENDOR/echarts" dist/echarts.min.js LICENSE NOTICE
echo "echarts ${ECHARTS}" > "$VENDOR/echarts/VERSION"

fetch leaflet "$LEAFLET"
copy "$tmp/leaflet/package" "$VENDOR/leaflet" dist/leaflet.js dist/leaflet.css dist/images LICENSE
echo "leaflet ${LEAFLET}" > "$VENDOR/leaflet/VERSION"

echo "vendored swagger-ui-dist ${SWAGGER}, htmx.org ${HTMX}, echarts ${ECHARTS}, leaflet ${LEAFLET}"
