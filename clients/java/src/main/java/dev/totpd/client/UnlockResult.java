package dev.totpd.client;

/**
 * What an unlock cleared (all false and 0: nothing was locked or counted).
 *
 * @param lockLifted the account was locked after too many consecutive failures
 * @param consecutiveFailuresCleared the run of consecutive failures that was cleared
 * @param factorsCleared factors whose failures, backoff or timed lock were cleared
 * @param budgetRefilled the account's failure budget was partly spent and is full again
 */
public record UnlockResult(
    boolean lockLifted,
    int consecutiveFailuresCleared,
    int factorsCleared,
    boolean budgetRefilled) {}
