"""What a weather forecast would be worth to the 24-hour forecasts: an outside experiment.

The product's model (crates/ml) uses only what is known at the forecast origin. This script
fits a comparable model (LightGBM, the change from the last value in logs, refits towards the
median) on the same kind of features, with a rolling origin (a refit every 91 days on the data
before each fold), twice:

- history: what is known at the origin (as the product does);
- perfect weather forecast: plus the station's weather *measured* at the target hour, as if a
  weather forecast were exact. This is an upper bound, not a result: it uses the future.

    python3 -m venv /tmp/venv && /tmp/venv/bin/pip install numpy pandas lightgbm scikit-learn
    /tmp/venv/bin/python docs/experiments/weather_forecast_bound.py ../shared/data

Measured on 2026-11-26 (skill of the MAE at 24 h against persistence):
London NO2 2003 history +16 %, perfect weather +41 %; London PM2.5 2003 +15 %, +31 %;
Beijing PM2.5 2013 +19 %, +47 %.
"""

import sys

import lightgbm as lgb
import numpy as np
import pandas as pd

H = 24


def load(data, name):
    if name == "london":
        df = pd.read_csv(f"{data}/london-marylebone-aq.csv", parse_dates=["time"])
        df = df.rename(columns={"no2_ppb": "no2", "pm25_ugm3": "pm25", "ws_ms": "ws", "wd_deg": "wd"})
    else:
        df = pd.read_csv(f"{data}/beijing-pm25.csv", parse_dates=["time"])
        df = df.rename(columns={"pm25_ugm3": "pm25", "dewp_c": "dewp", "temp_c": "temp", "pres_hpa": "pres", "iws_cum_ms": "iws"})
        df["wd"] = df.cbwd.map({"NW": 315, "NE": 45, "SE": 135, "SW": 225})
        df["calm"] = (df.cbwd == "cv").astype(float)
    df = df.set_index("time").drop(columns=["site", "cbwd"], errors="ignore")
    return df.reindex(pd.date_range(df.index.min(), df.index.max(), freq="h"))


def features(df, target, perfect_weather):
    y = df[target].astype(float)
    ly = np.log1p(y.clip(lower=0))
    F = pd.DataFrame(index=df.index)
    F["v0"] = y
    for k in [1, 2, 3, 6, 12, 23]:
        F[f"lag{k}"] = ly.shift(k) - ly
    for w in [6, 24, 168]:
        F[f"mean{w}"] = np.log1p(y.rolling(w, min_periods=1).mean()) - ly
    F["rstd24"] = y.rolling(24, min_periods=2).std() / (y.rolling(24, min_periods=1).mean() + 1)
    F["min24"] = np.log1p(y.rolling(24, min_periods=1).min()) - ly
    F["max24"] = np.log1p(y.rolling(24, min_periods=1).max()) - ly
    F["same_hour_2d"] = ly.shift(24) - ly
    F["same_hour_7d"] = ly.shift(144) - ly
    F["same_hour_mean_7d"] = np.log1p(sum(y.shift(24 * k) for k in range(7)) / 7) - ly
    t = df.index + pd.Timedelta(hours=H)
    F["target_hour"] = t.hour
    F["target_weekday"] = t.day_of_week
    weather = [c for c in ["ws", "temp", "dewp", "pres", "iws", "calm"] if c in df]
    for c in weather:
        F[c] = df[c]
    if "wd" in df:
        F["wd_sin"], F["wd_cos"] = np.sin(np.deg2rad(df.wd)), np.cos(np.deg2rad(df.wd))
    if perfect_weather:
        for c in weather:
            F["future_" + c] = df[c].shift(-H)
        if "wd" in df:
            future = np.deg2rad(df.wd.shift(-H))
            F["future_wd_sin"], F["future_wd_cos"] = np.sin(future), np.cos(future)
    return F, ly.shift(-H) - ly, y


def backtest(df, target, year, perfect_weather):
    F, change, y = features(df, target, perfect_weather)
    start, end = pd.Timestamp(f"{year}-01-01", tz="UTC"), pd.Timestamp(f"{year + 1}-01-01", tz="UTC")
    errors, persistence = [], []
    t = start
    while t < end:
        t2 = min(t + pd.Timedelta(days=91), end)
        train = (F.index < t - pd.Timedelta(hours=H)) & change.notna() & F.v0.notna()
        model = lgb.LGBMRegressor(n_estimators=300, learning_rate=0.05, min_child_samples=50,
                                  subsample=0.8, subsample_freq=1, colsample_bytree=0.8, verbose=-1)
        model.fit(F[train], change[train])
        residual = np.abs(change[train] - model.predict(F[train]))
        weights = 1 / np.maximum(residual, max(np.median(residual) * 0.5, 1e-3))
        model.fit(F[train], change[train], sample_weight=weights / weights.mean())
        test = (F.index >= t) & (F.index < t2) & change.notna() & F.v0.notna()
        if test.any():
            forecast = np.expm1(np.log1p(F.v0[test].clip(lower=0)) + model.predict(F[test]))
            actual = y.shift(-H)[test]
            errors.append(np.abs(forecast - actual))
            persistence.append(np.abs(F.v0[test] - actual))
        t = t2
    mae, pmae = pd.concat(errors).mean(), pd.concat(persistence).mean()
    return mae, pmae, 1 - mae / pmae


if __name__ == "__main__":
    data = sys.argv[1] if len(sys.argv) > 1 else "../shared/data"
    london, beijing = load(data, "london"), load(data, "beijing")
    for label, df, target, year in [("London NO2", london, "no2", 2003),
                                    ("London PM2.5", london, "pm25", 2003),
                                    ("Beijing PM2.5", beijing, "pm25", 2013)]:
        for perfect in (False, True):
            mae, pmae, skill = backtest(df, target, year, perfect)
            kind = "perfect weather forecast" if perfect else "history"
            print(f"{label} {year}, {kind}: MAE {mae:.2f}, persistence {pmae:.2f}, skill {skill:+.1%}", flush=True)
