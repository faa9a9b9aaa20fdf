using System.Globalization;

namespace Confine;

/// <summary>Parses sizes and durations the way Docker's flags and Kubernetes' manifests write them.</summary>
public static class Units
{
    /// <summary>
    /// Parses a byte count: a plain number, or one with a binary suffix <c>k</c>, <c>m</c>, <c>g</c>,
    /// <c>t</c> (also <c>kb</c>, <c>KiB</c>, ...). <c>64m</c> is 64 MiB.
    /// </summary>
    public static long ParseSize(string key, string text)
    {
        string t = text.Trim().ToLowerInvariant();
        int split = 0;
        while (split < t.Length && (char.IsAsciiDigit(t[split]) || t[split] == '.'))
        {
            split++;
        }

        string number = t[..split];
        string suffix = t[split..].Trim();
        long multiplier = suffix switch
        {
            "" or "b" => 1,
            "k" or "kb" or "kib" => 1L << 10,
            "m" or "mb" or "mib" => 1L << 20,
            "g" or "gb" or "gib" => 1L << 30,
            "t" or "tb" or "tib" => 1L << 40,
            _ => 0,
        };
        if (multiplier == 0 || !double.TryParse(number, NumberStyles.AllowDecimalPoint, CultureInfo.InvariantCulture, out double value))
        {
            throw new PolicyException(key, $"'{text}' is not a size (use a number with an optional k, m, g or t suffix)");
        }

        double bytes = value * multiplier;
        if (bytes > long.MaxValue)
        {
            throw new PolicyException(key, $"'{text}' is too large");
        }

        return (long)bytes;
    }

    /// <summary>
    /// Parses a duration: a number of seconds, or a number with <c>ms</c>, <c>s</c>, <c>m</c>, <c>h</c>;
    /// Go-style compounds such as <c>1m30s</c> work too.
    /// </summary>
    public static TimeSpan ParseDuration(string key, string text)
    {
        TimeSpan duration;
        try
        {
            duration = ParseDurationUnchecked(key, text);
        }
        catch (OverflowException)
        {
            duration = TimeSpan.MaxValue;
        }

        if (duration > MaxDuration)
        {
            throw new PolicyException(key, $"'{text}' is longer than the longest duration Confine can time, {MaxDuration.TotalDays:0} days");
        }

        return duration;
    }

    /// <summary>
    /// The longest timeout or interval: .NET's timers take at most 2^32-2 ms (~49.7 days), and a
    /// longer one would never fire rather than fail. Generous for any sandboxed run.
    /// </summary>
    public static TimeSpan MaxDuration { get; } = TimeSpan.FromDays(30);

    private static TimeSpan ParseDurationUnchecked(string key, string text)
    {
        string t = text.Trim().ToLowerInvariant();
        if (double.TryParse(t, NumberStyles.AllowDecimalPoint, CultureInfo.InvariantCulture, out double plain))
        {
            return TimeSpan.FromSeconds(plain);
        }

        TimeSpan total = TimeSpan.Zero;
        int i = 0;
        bool any = false;
        while (i < t.Length)
        {
            int start = i;
            while (i < t.Length && (char.IsAsciiDigit(t[i]) || t[i] == '.'))
            {
                i++;
            }

            int unitStart = i;
            while (i < t.Length && char.IsAsciiLetter(t[i]))
            {
                i++;
            }

            if (start == unitStart || !double.TryParse(t[start..unitStart], NumberStyles.AllowDecimalPoint, CultureInfo.InvariantCulture, out double value))
            {
                throw new PolicyException(key, $"'{text}' is not a duration (e.g. 500ms, 10s, 2m, 1h30m)");
            }

            total += t[unitStart..i] switch
            {
                "ms" => TimeSpan.FromMilliseconds(value),
                "s" or "" => TimeSpan.FromSeconds(value),
                "m" => TimeSpan.FromMinutes(value),
                "h" => TimeSpan.FromHours(value),
                _ => throw new PolicyException(key, $"'{text}': unknown unit '{t[unitStart..i]}' (use ms, s, m or h)"),
            };
            any = true;
        }

        if (!any)
        {
            throw new PolicyException(key, $"'{text}' is not a duration");
        }

        return total;
    }

    /// <summary>
    /// Writes a byte count the way <see cref="ParseSize"/> reads it, with the largest binary suffix
    /// that keeps it exact: <c>268435456</c> is <c>256m</c>, <c>1000</c> stays <c>1000</c>.
    /// </summary>
    public static string FormatSize(long bytes)
    {
        foreach ((int shift, char suffix) in (ReadOnlySpan<(int, char)>)[(40, 't'), (30, 'g'), (20, 'm'), (10, 'k')])
        {
            long unit = 1L << shift;
            if (bytes != 0 && bytes % unit == 0)
            {
                return (bytes / unit).ToString(CultureInfo.InvariantCulture) + suffix;
            }
        }

        return bytes.ToString(CultureInfo.InvariantCulture);
    }

    /// <summary>
    /// Writes a duration the way <see cref="ParseDuration"/> reads it: <c>10s</c>, <c>1m30s</c>,
    /// <c>1h</c>, <c>250ms</c>; exact to the millisecond.
    /// </summary>
    public static string FormatDuration(TimeSpan duration)
    {
        long milliseconds = (long)Math.Round(duration.TotalMilliseconds);
        if (milliseconds == 0)
        {
            return "0s";
        }

        var text = new System.Text.StringBuilder();
        foreach ((long unit, string suffix) in (ReadOnlySpan<(long, string)>)[(3_600_000, "h"), (60_000, "m"), (1000, "s"), (1, "ms")])
        {
            if (milliseconds >= unit)
            {
                text.Append((milliseconds / unit).ToString(CultureInfo.InvariantCulture)).Append(suffix);
                milliseconds %= unit;
            }
        }

        return text.ToString();
    }
}
