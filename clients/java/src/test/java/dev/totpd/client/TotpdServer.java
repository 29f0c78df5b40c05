package dev.totpd.client;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.time.Instant;
import java.util.Comparator;
import java.util.List;
import java.util.stream.Stream;

/**
 * Starts a real totpd from this repository on a free loopback port: {@code python -m totpd serve
 * --dev --listen 127.0.0.1:0 --data-dir D --ready-file F}. The Python is {@code $TOTPD_PYTHON},
 * else the repository's {@code .venv/bin/python}, else {@code python3}.
 */
final class TotpdServer implements AutoCloseable {
  private final Process process;
  private final Path dataDir;
  private final Path log;
  final String target;

  private TotpdServer(Process process, Path dataDir, Path log, String target) {
    this.process = process;
    this.dataDir = dataDir;
    this.log = log;
    this.target = target;
  }

  static Path repoRoot() {
    String root = System.getenv("TOTPD_REPO_ROOT");
    if (root == null || root.isEmpty()) {
      root = System.getProperty("totpd.repo.root", "../..");
    }
    return Path.of(root).toAbsolutePath().normalize();
  }

  static String python(Path root) {
    String py = System.getenv("TOTPD_PYTHON");
    if (py != null && !py.isEmpty()) {
      return py;
    }
    Path venv = root.resolve(".venv/bin/python");
    return Files.isExecutable(venv) ? venv.toString() : "python3";
  }

  static TotpdServer start() throws IOException, InterruptedException {
    return start(List.of());
  }

  /** Starts totpd with {@code extraArgs} after the usual flags (e.g. the TLS files). */
  static TotpdServer start(List<String> extraArgs) throws IOException, InterruptedException {
    Path root = repoRoot();
    Path dataDir = Files.createTempDirectory("totpd-java-");
    Path ready = dataDir.resolve("ready");
    Path log = dataDir.resolve("server.log");
    List<String> command =
        new java.util.ArrayList<>(
            List.of(
                python(root),
                "-m",
                "totpd",
                "serve",
                "--dev",
                "--listen",
                "127.0.0.1:0",
                "--data-dir",
                dataDir.toString(),
                "--ready-file",
                ready.toString()));
    command.addAll(extraArgs);
    ProcessBuilder pb =
        new ProcessBuilder(command)
            .directory(root.toFile())
            .redirectErrorStream(true)
            .redirectOutput(log.toFile());
    Process p = pb.start();
    Instant until = Instant.now().plus(Duration.ofSeconds(60));
    while (Instant.now().isBefore(until)) {
      if (Files.exists(ready)) {
        String addr = Files.readString(ready, StandardCharsets.UTF_8).trim();
        if (addr.matches(".+:\\d+")) {
          return new TotpdServer(p, dataDir, log, addr);
        }
      }
      if (!p.isAlive()) {
        throw new IllegalStateException(
            "totpd exited with " + p.exitValue() + ":\n" + Files.readString(log));
      }
      Thread.sleep(50);
    }
    p.destroyForcibly();
    throw new IllegalStateException(
        "totpd did not become ready in 60 s:\n" + Files.readString(log));
  }

  @Override
  public void close() throws IOException, InterruptedException {
    process.destroy(); // SIGTERM: the server drains and stops
    if (!process.waitFor(
        java.util.concurrent.TimeUnit.SECONDS.toMillis(10),
        java.util.concurrent.TimeUnit.MILLISECONDS)) {
      process.destroyForcibly().waitFor();
    }
    try (Stream<Path> walk = Files.walk(dataDir)) {
      walk.sorted(Comparator.reverseOrder()).forEach(p -> p.toFile().delete());
    }
  }

  /**
   * Writes throwaway TLS material into a new temporary directory with the repository's {@code
   * python -m tests.tls_certs DIR}: ca.pem, server.pem, server.key, client.pem, client.key.
   */
  static Path writeTlsFiles() throws IOException, InterruptedException {
    Path root = repoRoot();
    Path dir = Files.createTempDirectory("totpd-java-tls-");
    Process p =
        new ProcessBuilder(List.of(python(root), "-m", "tests.tls_certs", dir.toString()))
            .directory(root.toFile())
            .redirectErrorStream(true)
            .start();
    String output = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
    if (p.waitFor() != 0) {
      throw new IllegalStateException("tests.tls_certs failed:\n" + output);
    }
    return dir;
  }

  /** Deletes a directory tree (best effort). */
  static void deleteTree(Path dir) throws IOException {
    try (Stream<Path> walk = Files.walk(dir)) {
      walk.sorted(Comparator.reverseOrder()).forEach(p -> p.toFile().delete());
    }
  }

  String log() throws IOException {
    return Files.readString(log);
  }
}
