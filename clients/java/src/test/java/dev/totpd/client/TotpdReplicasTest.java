package dev.totpd.client;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.grpc.EquivalentAddressGroup;
import io.grpc.NameResolver;
import io.grpc.NameResolverProvider;
import io.grpc.NameResolverRegistry;
import java.net.InetSocketAddress;
import java.net.URI;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.UUID;
import org.junit.jupiter.api.Test;

/**
 * Spreading calls over replicas: round_robin with a retry policy, from {@link
 * TotpdClient.Builder#defaultServiceConfig}, as the README shows. Two real servers with separate
 * databases, so where each enrollment landed is visible. grpc-java resolves a DNS name to every
 * address it has; here, with two ports on one host, a small resolver names both.
 */
class TotpdReplicasTest {
  static final Map<String, ?> SERVICE_CONFIG =
      Map.of(
          "loadBalancingConfig",
          List.of(Map.of("round_robin", Map.of())),
          "methodConfig",
          List.of(
              Map.of(
                  "name",
                  List.of(Map.of("service", "totpd.v1.TotpService")),
                  "retryPolicy",
                  Map.of(
                      "maxAttempts",
                      3.0,
                      "initialBackoff",
                      "0.1s",
                      "maxBackoff",
                      "1s",
                      "backoffMultiplier",
                      2.0,
                      "retryableStatusCodes",
                      List.of("UNAVAILABLE")))));

  /** Resolves {@code replicas:///NAME} to a fixed list of addresses. */
  static final class Replicas extends NameResolverProvider {
    private final List<EquivalentAddressGroup> groups = new ArrayList<>();

    Replicas(List<String> targets) {
      for (String t : targets) {
        int colon = t.lastIndexOf(':');
        groups.add(
            new EquivalentAddressGroup(
                new InetSocketAddress(
                    t.substring(0, colon), Integer.parseInt(t.substring(colon + 1)))));
      }
    }

    @Override
    protected boolean isAvailable() {
      return true;
    }

    @Override
    protected int priority() {
      return 5;
    }

    @Override
    public String getDefaultScheme() {
      return "replicas";
    }

    @Override
    public NameResolver newNameResolver(URI uri, NameResolver.Args args) {
      if (!"replicas".equals(uri.getScheme())) {
        return null;
      }
      return new NameResolver() {
        @Override
        public String getServiceAuthority() {
          return "totpd";
        }

        @Override
        public void start(Listener2 listener) {
          listener.onResult(ResolutionResult.newBuilder().setAddresses(groups).build());
        }

        @Override
        public void shutdown() {}
      };
    }
  }

  @Test
  void roundRobinSpreadsCallsOverReplicas() throws Exception {
    try (TotpdServer first = TotpdServer.start();
        TotpdServer second = TotpdServer.start()) {
      Replicas replicas = new Replicas(List.of(first.target, second.target));
      NameResolverRegistry.getDefaultRegistry().register(replicas);
      List<String> accounts = new ArrayList<>();
      try (TotpdClient both =
          TotpdClient.builder("replicas:///totpd")
              .plaintext()
              .deadline(Duration.ofSeconds(10))
              .defaultServiceConfig(SERVICE_CONFIG)
              .build()) {
        for (int i = 0; i < 6; i++) {
          accounts.add("java-rr-" + UUID.randomUUID());
          both.enroll(accounts.get(i), "Pixel 8");
        }
      } finally {
        NameResolverRegistry.getDefaultRegistry().deregister(replicas);
      }
      // Each got some (round_robin picks among the connections ready so far, so the first
      // calls may all go to the first one up), and every one landed once.
      int total = 0;
      for (TotpdServer server : List.of(first, second)) {
        try (TotpdClient one = TotpdClient.builder(server.target).plaintext().build()) {
          int landed = 0;
          for (String a : accounts) {
            landed += one.listFactors(a, true).size();
          }
          assertTrue(landed > 0, server.target + " got none of the enrollments");
          total += landed;
        }
      }
      assertEquals(accounts.size(), total);
    }
  }
}
