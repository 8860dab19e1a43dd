//! A target's `bandwidth`: the most bytes a second it may send, and the most it may receive
//! (`"2MiB/s"`, `"500KB/s"`), enforced by the host for every plugin (providers/throttle.rs).

/// Below this a pack (several MiB) would take minutes a piece: surely a typo.
const MIN_BYTES_PER_SECOND: u64 = 1024;

/// Bytes per second from `"2MiB/s"`: a number (decimals allowed), then `B`, `KB`, `MB`,
/// `GB` (powers of 1000) or `KiB`, `MiB`, `GiB` (powers of 1024), then `/s`.
pub(super) fn parse(text: &str) -> Result<u64, String> {
    let usage = || {
        format!(
            "{text:?} is not a rate such as \"2MiB/s\", \"500KiB/s\" or \"10MB/s\" \
             (units B, KB, MB, GB, KiB, MiB, GiB; at least 1KiB/s)"
        )
    };
    let amount = text.trim().strip_suffix("/s").ok_or_else(usage)?.trim_end();
    let split = amount
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .ok_or_else(usage)?;
    let (number, unit) = amount.split_at(split);
    let unit: u64 = match unit.trim_start() {
        "B" => 1,
        "KB" | "kB" => 1000,
        "MB" => 1000 * 1000,
        "GB" => 1000 * 1000 * 1000,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        _ => return Err(usage()),
    };
    let number: f64 = number.parse().map_err(|_| usage())?;
    let rate = number * unit as f64;
    if !rate.is_finite() || rate < MIN_BYTES_PER_SECOND as f64 || rate > u64::MAX as f64 / 2.0 {
        return Err(usage());
    }
    Ok(rate as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_read_as_written() {
        assert_eq!(parse("2MiB/s"), Ok(2 << 20));
        assert_eq!(parse("500KiB/s"), Ok(500 << 10));
        assert_eq!(parse("10MB/s"), Ok(10_000_000));
        assert_eq!(parse("1.5 MiB/s"), Ok(3 << 19));
        assert_eq!(parse("4096B/s"), Ok(4096));
    }

    #[test]
    fn anything_else_is_refused_with_an_example() {
        for bad in [
            "2MiB",
            "fast",
            "0MiB/s",
            "10B/s",
            "2Mb/s",
            "MiB/s",
            "-1MiB/s",
            "1..2MiB/s",
        ] {
            let err = parse(bad).expect_err(bad);
            assert!(err.contains("2MiB/s") && err.contains(bad), "{bad}: {err}");
        }
    }
}
