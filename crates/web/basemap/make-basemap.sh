#!/usr/bin/env bash
# Rebuilds the shipped basemap data from the registry packages it comes from (run once by
# hand; nothing downloads at build or run time). Needs npm, pip and python3.
#   world-atlas@2.0.2 (npm)   -> countries-110m.json, countries-50m.json (as published)
#   geopandas==0.14.4 (PyPI)  -> places.csv (its bundled Natural Earth populated places)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cd "$work"
npm pack --silent world-atlas@2.0.2 >/dev/null
tar xzf world-atlas-2.0.2.tgz
cp package/countries-110m.json package/countries-50m.json "$here/"
cp package/LICENSE "$here/LICENSE-world-atlas"
pip download --quiet --no-deps -d . geopandas==0.14.4
python3 - "$here/places.csv" <<'PY'
"""Natural Earth populated places (1:110m, as bundled in geopandas' datasets) to CSV.

The file lists the places from the least to the most important (by Natural Earth's
scalerank), so `rank` 1 is the last one. Two names lost their non-Latin-1 letters in that
shapefile's Latin-1 encoding; they are restored here.
"""
import csv, glob, io, struct, sys, zipfile

wheel = zipfile.ZipFile(glob.glob("geopandas-*.whl")[0])
base = "geopandas/datasets/naturalearth_cities/naturalearth_cities"
dbf, shp = wheel.read(base + ".dbf"), wheel.read(base + ".shp")
count, header, record = struct.unpack("<IHH", dbf[4:12])
names = [dbf[header + i * record + 1 : header + (i + 1) * record].decode("latin-1").strip()
         for i in range(count)]
FIX = {"Chi?in?u": "Chișinău", "?saka": "Ōsaka", "Washington,  D.C.": "Washington, D.C."}
points, pos = [], 100
while pos < len(shp):
    _, length = struct.unpack(">II", shp[pos : pos + 8])
    kind, x, y = struct.unpack("<Idd", shp[pos + 8 : pos + 28])
    assert kind == 1, "point records only"
    points.append((y, x))
    pos += 8 + 2 * length
assert len(points) == count
out = io.StringIO()
w = csv.writer(out, lineterminator="\n")
w.writerow(["name", "lat", "lon", "rank"])
for i, (name, (lat, lon)) in enumerate(zip(names, points)):
    w.writerow([FIX.get(name, name), f"{lat:.4f}", f"{lon:.4f}", count - i])
open(sys.argv[1], "w", encoding="utf-8").write(out.getvalue())
PY
echo "basemap data written to $here"
