namespace Confine.Tests.Support;

/// <summary>Files of the repository the tests were built from (docs the tests hold the code to).</summary>
internal static class RepositoryFiles
{
    private static readonly Lazy<string> s_root = new(() =>
    {
        for (DirectoryInfo? dir = new(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            if (File.Exists(Path.Combine(dir.FullName, "Confine.slnx")))
            {
                return dir.FullName;
            }
        }

        throw new DirectoryNotFoundException($"no Confine.slnx above {AppContext.BaseDirectory}");
    });

    public static string PathOf(string relative) => Path.Combine(s_root.Value, relative);

    public static string Read(string relative) => File.ReadAllText(PathOf(relative));
}
