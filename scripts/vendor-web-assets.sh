#!/usr/bin/env bash
# Refresh the Swagger UI files served at /api/docs from the swagger-ui-dist npm package, so
# the docs work on sites without Internet access (no CDN). Run from the checkout; commit the
# result. VERSION may be given: scripts/vendor-web-assets.sh 5.35.0
set -euo pipefail
VERSION="${1:-5.35.0}"
DEST="hub/api/static/swagger-ui"
FILES=(swagger-ui-bundle.js swagger-ui.css favicon-32x32.png LICENSE NOTICE)
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
(cd "$tmp" && npm pack --silent "swagger-ui-dist@${VERSION}" >/dev/null && tar xzf swagger-ui-dist-*.tgz)
mkdir -p "$DEST"
for f in "${FILES[@]}"; do
    if [ -f "$tmp/package/$f" ]; then cp "$tmp/package/$f" "$DEST/$f"; fi
done
# the bundle names its source map; the map itself is not shipped
sed -i '/^\/\/# sourceMappingURL=/d' "$DEST/swagger-ui-bundle.js" "$DEST/swagger-ui.css"
echo "swagger-ui-dist ${VERSION}" > "$DEST/VERSION"
echo "vendored swagger-ui-dist ${VERSION} into $DEST"
