#!/usr/bin/env python3
"""Regenerates the demo subset from ../shared/data (run from the repository root:
`python3 crates/ecocityhub/demo/make-demo.py ../shared/data`). Rows are copied unchanged."""
import csv, sys, os

src = sys.argv[1] if len(sys.argv) > 1 else "../shared/data"
out = os.path.dirname(os.path.abspath(__file__))

def subset(name, keep, out_name):
    with open(os.path.join(src, name), newline="") as f, open(os.path.join(out, out_name), "w", newline="") as g:
        r = csv.reader(f)
        w = csv.writer(g, lineterminator="\n")
        header = next(r)
        w.writerow(header)
        n = 0
        for row in r:
            if keep(row):
                w.writerow(row)
                n += 1
        print(out_name, n, "rows")

# Last quarter of each hourly series, the second half of 2008 of the German network.
subset("london-marylebone-aq.csv", lambda r: r[0] >= "2004-10-01", "london-marylebone-2004q4.csv")
subset("beijing-pm25.csv", lambda r: r[0] >= "2013-10-01", "beijing-pm25-2013q4.csv")
subset("germany-pm10-rural.csv", lambda r: r[0] >= "2008-07-01", "germany-pm10-2008h2.csv")
subset("nyc-airports-weather.csv", lambda r: r[0] >= "2013-10-01", "nyc-weather-2013q4.csv")

known = [
    ("marylebone_road", "London Marylebone Road (kerbside)", 51.52253, -0.15461, "Westminster, London", "Europe/London"),
    ("beijing_us_embassy", "Beijing US Embassy", 39.95970, 116.46610, "Chaoyang, Beijing", "Asia/Shanghai"),
    ("EWR", "Newark Liberty International Airport", 40.69250, -74.16870, "Newark, New Jersey", "America/New_York"),
    ("JFK", "John F. Kennedy International Airport", 40.63980, -73.77890, "Queens, New York", "America/New_York"),
    ("LGA", "LaGuardia Airport", 40.77690, -73.87400, "Queens, New York", "America/New_York"),
    ("victoria_au", "Melbourne (Victoria demand region)", -37.81360, 144.96310, "Victoria", "Australia/Melbourne"),
]
with open(os.path.join(src, "germany-pm10-rural-stations.csv"), newline="") as f, \
        open(os.path.join(out, "stations.csv"), "w", newline="") as g:
    w = csv.writer(g, lineterminator="\n")
    w.writerow(["site", "name", "lat", "lon", "area", "timezone"])
    for k in known:
        w.writerow(k)
    for row in csv.DictReader(f):
        w.writerow([row["site"], f"{row['site']} (rural background, {row['area']})", row["lat"], row["lon"], row["area"], "Europe/Berlin"])
