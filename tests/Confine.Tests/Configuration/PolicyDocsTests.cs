using System.Text.Json;
using Confine.Configuration;
using Confine.Tests.Support;

namespace Confine.Tests.Configuration;

/// <summary>The published schema and documents must say what the loader and the levels do.</summary>
[Trait("Category", "Configuration")]
public sealed class PolicyDocsTests
{
    private const string LevelsBegin = "<!-- levels-table:begin (generated from IsolationLevels; a test checks it) -->\n";
    private const string LevelsEnd = "<!-- levels-table:end -->";

    [Fact]
    public void Schema_ListsExactlyTheKeysTheLoaderAccepts()
    {
        using JsonDocument schema = JsonDocument.Parse(RepositoryFiles.Read("docs/policy.schema.json"));
        var keys = new List<string>();
        CollectKeys(schema.RootElement, "", keys);
        Assert.Equal(PolicyKeys.Paths().Order(StringComparer.Ordinal), keys.Order(StringComparer.Ordinal));
    }

    [Fact]
    public void Schema_RefusesUnknownKeysEverywhere()
    {
        using JsonDocument schema = JsonDocument.Parse(RepositoryFiles.Read("docs/policy.schema.json"));
        var open = new List<string>();
        FindOpenObjects(schema.RootElement, "(root)", open);
        Assert.Empty(open);
    }

    [Fact]
    public void ConfigurationDoc_DescribesEveryKey()
    {
        string doc = RepositoryFiles.Read("docs/configuration.md");
        Assert.All(PolicyKeys.Paths(), path => Assert.Contains($"`{path}`", doc));
    }

    [Fact]
    public void LevelsDoc_TableIsTheOneTheCodeGenerates()
    {
        string path = RepositoryFiles.PathOf("docs/levels.md");
        string doc = File.ReadAllText(path);
        int begin = doc.IndexOf(LevelsBegin, StringComparison.Ordinal);
        int end = doc.IndexOf(LevelsEnd, StringComparison.Ordinal);
        Assert.True(begin >= 0 && end > begin, "docs/levels.md has no generated table markers");
        string expected = LevelTable.Markdown();
        string actual = doc[(begin + LevelsBegin.Length)..end];

        // CONFINE_UPDATE_DOCS=1 rewrites the table after a deliberate change to a level.
        if (actual != expected && Environment.GetEnvironmentVariable("CONFINE_UPDATE_DOCS") == "1")
        {
            File.WriteAllText(path, doc[..(begin + LevelsBegin.Length)] + expected + doc[end..]);
            actual = expected;
        }

        Assert.True(actual == expected, $"docs/levels.md's table differs from the levels; expected:\n{expected}");
    }

    [Fact]
    public void LevelTable_HasARowForEveryTopLevelKey()
    {
        string[] knobs = [.. LevelTable.Knobs];
        IEnumerable<string> missing = PolicyKeys.Root
            .Select(k => k.Name)
            .Where(name => name != "level" && !knobs.Any(k => k == name || k.StartsWith(name + ".", StringComparison.Ordinal)));
        Assert.Empty(missing);
    }

    /// <summary>Key paths as <see cref="PolicyKeys.Paths"/> writes them: <c>resources.memory</c>, <c>binds[].source</c>.</summary>
    private static void CollectKeys(JsonElement schema, string prefix, List<string> keys)
    {
        if (!schema.TryGetProperty("properties", out JsonElement properties))
        {
            return;
        }

        foreach (JsonProperty property in properties.EnumerateObject())
        {
            string path = prefix + property.Name;
            keys.Add(path);
            CollectKeys(property.Value, path + ".", keys);
            if (property.Value.TryGetProperty("items", out JsonElement items))
            {
                foreach (JsonElement shape in Shapes(items))
                {
                    CollectKeys(shape, path + "[].", keys);
                }
            }
        }
    }

    private static void FindOpenObjects(JsonElement schema, string path, List<string> open)
    {
        if (schema.TryGetProperty("properties", out JsonElement properties))
        {
            if (!schema.TryGetProperty("additionalProperties", out JsonElement additional) || additional.ValueKind != JsonValueKind.False)
            {
                open.Add(path);
            }

            foreach (JsonProperty property in properties.EnumerateObject())
            {
                FindOpenObjects(property.Value, $"{path}.{property.Name}", open);
                if (property.Value.TryGetProperty("items", out JsonElement items))
                {
                    foreach (JsonElement shape in Shapes(items))
                    {
                        FindOpenObjects(shape, $"{path}.{property.Name}[]", open);
                    }
                }
            }
        }
    }

    private static IEnumerable<JsonElement> Shapes(JsonElement items) =>
        items.TryGetProperty("oneOf", out JsonElement choices) ? choices.EnumerateArray() : [items];
}
