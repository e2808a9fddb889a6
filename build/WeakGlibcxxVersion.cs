// Marks one version requirement of an ELF shared object as weak (VER_FLG_WEAK) so that the
// dynamic loader accepts a system library lacking it. TorchSharp 0.107.0's libLibTorchSharp.so
// asks for GLIBCXX_3.4.32 only for std::ios_base_library_init, which nothing calls; Debian 12's
// libstdc++ stops at 3.4.30 and the load fails. Runs as an MSBuild task on the build output's copy.
using System;
using System.IO;
using System.Text;
using Microsoft.Build.Framework;
using Microsoft.Build.Utilities;

public class WeakGlibcxxVersion : Task
{
    [Required] public string Directory { get; set; } = "";
    [Required] public string Version { get; set; } = "";
    public string SystemLibStdCxx { get; set; } = "/usr/lib/x86_64-linux-gnu/libstdc++.so.6";

    const uint ShtGnuVerneed = 0x6ffffffe;
    const ushort VerFlgWeak = 0x2;

    public override bool Execute()
    {
        if (!System.IO.Directory.Exists(Directory)) return true;
        if (File.Exists(SystemLibStdCxx) && Contains(File.ReadAllBytes(SystemLibStdCxx), Encoding.ASCII.GetBytes(Version + "\0")))
            return true; // the system provides the version: leave the binary untouched
        foreach (var path in System.IO.Directory.GetFiles(Directory, "libLibTorchSharp.so", SearchOption.AllDirectories))
        {
            var bytes = File.ReadAllBytes(path);
            int patched = Patch(bytes, Version);
            if (patched > 0)
            {
                // The output copy may be a hard link into the NuGet cache: replace, never write through.
                var tmp = path + ".tmp";
                File.WriteAllBytes(tmp, bytes);
                File.Delete(path);
                File.Move(tmp, path);
                Log.LogMessage(MessageImportance.High, $"WeakGlibcxxVersion: marked {Version} weak in {path}");
            }
        }
        return !Log.HasLoggedErrors;
    }

    static bool Contains(byte[] haystack, byte[] needle)
    {
        for (int i = Array.IndexOf(haystack, needle[0]); i >= 0 && i <= haystack.Length - needle.Length; i = Array.IndexOf(haystack, needle[0], i + 1))
        {
            int j = 1;
            while (j < needle.Length && haystack[i + j] == needle[j]) j++;
            if (j == needle.Length) return true;
        }
        return false;
    }

    /// <summary>Returns the number of entries changed (0 when already weak or absent).</summary>
    static int Patch(byte[] elf, string version)
    {
        if (elf.Length < 64 || elf[0] != 0x7f || elf[1] != (byte)'E' || elf[4] != 2 || elf[5] != 1)
            return 0; // only 64-bit little-endian ELF
        ulong shoff = BitConverter.ToUInt64(elf, 0x28);
        int shentsize = BitConverter.ToUInt16(elf, 0x3A), shnum = BitConverter.ToUInt16(elf, 0x3C);
        int changed = 0;
        for (int i = 0; i < shnum; i++)
        {
            int sh = checked((int)shoff + i * shentsize);
            if (BitConverter.ToUInt32(elf, sh + 4) != ShtGnuVerneed) continue;
            int off = (int)BitConverter.ToUInt64(elf, sh + 0x18);
            int link = (int)BitConverter.ToUInt32(elf, sh + 0x28);
            int strtab = (int)BitConverter.ToUInt64(elf, checked((int)shoff + link * shentsize) + 0x18);
            int need = off;
            while (true)
            {
                int cnt = BitConverter.ToUInt16(elf, need + 2);
                int aux = need + (int)BitConverter.ToUInt32(elf, need + 8);
                for (int a = 0; a < cnt; a++)
                {
                    int name = strtab + (int)BitConverter.ToUInt32(elf, aux + 8);
                    int end = Array.IndexOf(elf, (byte)0, name);
                    if (Encoding.ASCII.GetString(elf, name, end - name) == version)
                    {
                        ushort flags = BitConverter.ToUInt16(elf, aux + 4);
                        if ((flags & VerFlgWeak) == 0)
                        {
                            ushort weak = (ushort)(flags | VerFlgWeak);
                            elf[aux + 4] = (byte)weak;
                            elf[aux + 5] = (byte)(weak >> 8);
                            changed++;
                        }
                    }
                    uint nextAux = BitConverter.ToUInt32(elf, aux + 12);
                    if (nextAux == 0) break;
                    aux += (int)nextAux;
                }
                uint next = BitConverter.ToUInt32(elf, need + 12);
                if (next == 0) break;
                need += (int)next;
            }
        }
        return changed;
    }
}
