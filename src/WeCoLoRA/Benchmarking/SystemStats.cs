using System.Globalization;

namespace WeCoLoRA.Benchmarking;

/// <summary>Memory and load figures from /proc (Linux); null where the file is missing.</summary>
public static class SystemStats
{
    /// <summary>Peak resident set size (VmHWM) of a process in MiB; the current process when <paramref name="pid"/> is null.</summary>
    public static double? PeakRssMb(int? pid = null) => StatusKb(pid, "VmHWM:") / 1024.0;

    /// <summary>Current resident set size (VmRSS) in MiB.</summary>
    public static double? RssMb(int? pid = null) => StatusKb(pid, "VmRSS:") / 1024.0;

    static double? StatusKb(int? pid, string key)
    {
        try
        {
            foreach (var line in File.ReadLines($"/proc/{(pid is int p ? p.ToString(CultureInfo.InvariantCulture) : "self")}/status"))
                if (line.StartsWith(key, StringComparison.Ordinal))
                    return double.Parse(line[key.Length..].Trim().Split(' ')[0], CultureInfo.InvariantCulture);
        }
        catch (IOException) { }
        catch (UnauthorizedAccessException) { }
        return null;
    }

    /// <summary>
    /// Minor page faults of this process so far (minflt, the 10th field of /proc/self/stat): each is a page the kernel
    /// had to map and zero, which is what a freshly mapped allocation costs.
    /// </summary>
    public static long? MinorFaults()
    {
        try
        {
            var stat = File.ReadAllText("/proc/self/stat");
            return long.Parse(stat[(stat.LastIndexOf(')') + 2)..].Split(' ')[7], CultureInfo.InvariantCulture); // after "pid (comm) "
        }
        catch (IOException) { return null; }
        catch (UnauthorizedAccessException) { return null; }
    }

    /// <summary>The 1-minute load average (the machine may be shared: absolute numbers are only as good as this).</summary>
    public static double? Load1()
    {
        try
        {
            return double.Parse(File.ReadAllText("/proc/loadavg").Split(' ')[0], CultureInfo.InvariantCulture);
        }
        catch (IOException) { return null; }
        catch (UnauthorizedAccessException) { return null; }
    }

    /// <summary>The CPU model name from /proc/cpuinfo.</summary>
    public static string CpuModel()
    {
        try
        {
            foreach (var line in File.ReadLines("/proc/cpuinfo"))
                if (line.StartsWith("model name", StringComparison.Ordinal))
                    return line[(line.IndexOf(':') + 1)..].Trim();
        }
        catch (IOException) { }
        catch (UnauthorizedAccessException) { }
        return "unknown";
    }
}
